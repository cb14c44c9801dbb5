"""`recsys bench eval` (fast scorer vs reference) and `recsys bench demo` (stage wall times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.bench.demo import StageClock, bench_demo, stage_group
from recsys.config import SplitParams
from recsys.etl.split import run_split
from tests.conftest import PROJECT_ROOT, dvc, git, tiny_ratings

EVAL_KEYS = {"fast_queries_per_s", "reference_queries_per_s", "max_abs_diff"}


@pytest.mark.slow
def test_bench_eval_json_has_the_contract_keys_and_the_paths_agree(tmp_path):
    (tmp_path / "ratings.csv").write_text(tiny_ratings().to_csv(index=False))
    run_split(tmp_path / "ratings.csv", tmp_path / "split", SplitParams())
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "bench", "eval", "--json", "--models", "ncf",
         "ss4rec", "--split", str(tmp_path / "split"), "--checkpoints", str(tmp_path / "none")],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"ncf", "ss4rec"}
    for row in result.values():
        assert set(row) >= EVAL_KEYS
        assert row["max_abs_diff"] <= 1e-5 and row["rank_mismatches"] == 0
        assert row["fast_queries_per_s"] > 0 and row["reference_queries_per_s"] > 0
        assert row["n_queries"] == 72  # tiny: 360 ratings, val and test 10 % each
        assert row["model"] == "initialised from params.yaml"


def test_bench_eval_scores_a_checkpoint_with_its_rating_weights_as_evaluate_does(tmp_path):
    import torch

    from recsys.bench.eval import bench_eval
    from recsys.config import load_params
    from recsys.etl.split import temporal_split
    from recsys.models.ncf import NCF
    from recsys.training.checkpoint import model_payload, save_checkpoint
    from recsys.training.tensors import split_from_frames

    parts = temporal_split(tiny_ratings(), SplitParams())
    data = split_from_frames(parts["train"], parts["val"], parts["test"])
    params = load_params(PROJECT_ROOT / "params.yaml")
    params.train.device = "cpu"
    torch.manual_seed(0)
    model = NCF(params.ncf, data.spec)
    rating = {k: v + 0.1 * torch.randn_like(v) for k, v in model.state_dict().items()}
    (tmp_path / "models").mkdir()
    save_checkpoint(
        tmp_path / "models" / "ncf.pt",
        {**model_payload(model, params.ncf, data.spec, data.fingerprint),
         "state_dict": model.state_dict(), "rating_state_dict": rating},
    )  # fmt: skip
    both = bench_eval(data, ["ncf"], params, tmp_path / "models", repeats=1)["ncf"]
    alone = bench_eval(data, ["ncf"], params, tmp_path / "models", 1, ranking_only=True)["ncf"]
    assert both["rater"] and not alone["rater"]
    for row in (both, alone):
        assert row["max_abs_diff"] <= 1e-5 and row["rank_mismatches"] == 0


def test_stage_clock_times_each_stage_from_its_line_to_the_next(monkeypatch):
    now = iter([0.0, 1.0, 4.0, 10.0])
    monkeypatch.setattr("recsys.bench.demo.time.perf_counter", lambda: next(now))
    clock = StageClock(echo=False)  # began at 0
    clock.line("Running stage 'split':")  # 1
    clock.line("> python -m recsys.etl.split")
    clock.line("Running stage 'batch@1':")  # 4
    clock.stop()  # 10
    assert clock.seconds == {"split": 3.0, "batch@1": 6.0}


def test_stage_group_folds_per_day_stages_only():
    assert stage_group("batch@12") == "batch@*" and stage_group("abtest@3") == "abtest@*"
    assert stage_group("train@ncf") == "train@ncf" and stage_group("report") == "report"


@pytest.mark.slow
def test_bench_demo_times_every_stage_of_a_fresh_clone(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "data").mkdir()
    (repo / "data" / "in.txt").write_text("x\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  first:\n    cmd: cp data/in.txt one.txt\n    deps: [data/in.txt]\n    outs: [one.txt]\n"
        "  second:\n    cmd: sleep 1 && cp one.txt two.txt\n    deps: [one.txt]\n"
        "    outs: [two.txt]\n"
    )
    (repo / ".gitignore").write_text("/data\n")
    git(repo, "init", "-q", "-b", "main")
    assert dvc(repo, "init", "-q").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two stages")
    result = bench_demo(repo, keep=tmp_path / "clone")
    assert set(result["stages"]) == {"first", "second"}
    assert result["stages"]["second"] >= 1.0  # its sleep
    assert result["total_s"] >= sum(result["stages"].values())
    assert (tmp_path / "clone" / "two.txt").read_text() == "x\n"  # it ran in the clone
    assert not (repo / "two.txt").exists()  # and not in the source
