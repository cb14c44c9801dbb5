"""DVC experiment sweeps (`recsys experiments grid`) and `recsys compare` between experiments.

Unit tests check grid files and the `-S` arguments; the slow test runs a real two-experiment
sweep in a git + DVC repository and checks `recsys compare` against a recomputation from the
two experiments' prediction files.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path

import dvc.api
import numpy as np
import pandas as pd
import pytest
import yaml
from dvc.utils.hydra import apply_overrides, get_hydra_sweeps
from ruamel.yaml import YAML
from scipy import stats as sps

from recsys import experiments
from recsys.cli import main
from recsys.config import AB_METRICS, list_presets
from recsys.errors import RecsysError
from recsys.experiments import (
    comparison_rows,
    load_grid,
    render_table,
    set_params_args,
    unsuccessful,
)
from tests.conftest import PROJECT_ROOT, git
from tests.test_compare import holm, outcome
from tests.test_pipeline import recsys_cli, use_tiny_dataset

PARAMS = PROJECT_ROOT / "params.yaml"
SMALL_GRID = PROJECT_ROOT / "configs/grids/ss4rec_small.yaml"


def grid_file(tmp_path: Path, doc: dict) -> Path:
    """A grid file with this content."""
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# ---------------------------------------------------------------- grid files


def test_the_shipped_grid_is_valid_and_not_a_preset():
    grid = load_grid(SMALL_GRID, PARAMS)
    assert grid.axes() == {"ss4rec.d_state": [16, 32], "ss4rec.n_layers": [1, 2]}
    assert (grid.size(), grid.targets, grid.jobs) == (4, ["evaluate@ss4rec"], 1)
    assert "ss4rec_small" not in list_presets(PROJECT_ROOT / "configs")
    assert "grids" not in list_presets(PROJECT_ROOT / "configs")


def test_seeds_are_a_train_seed_axis(tmp_path: Path):
    path = grid_file(tmp_path, {"params": {"ncf.lr": [0.001, 0.01]}, "seeds": [0, 1, 2]})
    grid = load_grid(path, PARAMS)
    assert grid.axes() == {"ncf.lr": [0.001, 0.01], "train.seed": [0, 1, 2]}
    assert grid.size() == 6
    assert grid.targets == []  # every stage
    assert set_params_args(grid.axes()) == ["-S", "ncf.lr=0.001,0.01", "-S", "train.seed=0,1,2"]
    only_seeds = load_grid(grid_file(tmp_path, {"seeds": [7]}), PARAMS)
    assert only_seeds.axes() == {"train.seed": [7]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"params": {"ss4rec.d_sate": [16]}}, r"d_sate: not a params\.yaml key \(ss4rec has: d_"),
        ({"params": {"ss4recc.d_state": [16]}}, r"params\.ss4recc\.d_state: not a params\.yaml"),
        ({"params": {"ss4rec.d_state.x": [16]}}, r"params\.ss4rec\.d_state\.x: not a params"),
        ({"params": {"ss4rec": [16]}}, r"params\.ss4rec: a whole section"),
        ({"params": {"ss4rec.d_state": []}}, r"params\.ss4rec\.d_state: needs at least one value"),
        ({"params": {"ss4rec.d_state": 16}}, r"params\.ss4rec\.d_state: Input should be a valid"),
        ({"params": {"ss4rec.d_state": [16, 15]}}, r"\(ss4rec\.d_state=15\): .* multiple of 2"),
        ({"params": {"train.seed": [1]}, "seeds": [2]}, r"train\.seed under params or as seeds"),
        ({"params": {}}, r"nothing to sweep"),
        ({"seeds": []}, r"seeds: List should have at least 1 item"),
        ({"param": {"ncf.lr": [1]}}, r"param: unknown field \(a grid file has params, seeds"),
        ({"params": {"ncf.lr": [0.1]}, "jobs": 0}, r"jobs: Input should be greater than"),
    ],
)
def test_a_bad_grid_file_is_one_line_naming_the_file_and_key(tmp_path, doc, message):
    path = grid_file(tmp_path, doc)
    with pytest.raises(RecsysError, match=message) as err:
        load_grid(path, PARAMS)
    assert str(err.value).startswith(f"{path}") and "\n" not in str(err.value)


def test_set_params_args_make_dvc_queue_the_cross_product_of_the_values(tmp_path: Path):
    grid = {
        "a.b": [1, 2.5, 1e-05],
        "a.c": [True, False],
        "d": [[64, 32], [16]],
        "e": ["auto", "two words", 'a,"b"'],
        "f": [None],
    }
    args = set_params_args(grid)
    assert args[::2] == ["-S"] * len(grid)
    sweeps = get_hydra_sweeps({"params.yaml": args[1::2]})  # what `dvc exp run -S` does
    applied = set()
    for sweep in sweeps:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({"a": {"b": 0, "c": 0}, "d": 0, "e": 0, "f": 0}))
        apply_overrides(path, sweep["params.yaml"])
        doc = YAML(typ="safe").load(path.read_text())  # YAML 1.2, as DVC reads it: 1e-05 a float
        applied.add(json.dumps([doc["a"]["b"], doc["a"]["c"], doc["d"], doc["e"], doc["f"]]))
    assert applied == {json.dumps(list(combo)) for combo in itertools.product(*grid.values())}
    assert len(sweeps) == 3 * 2 * 2 * 3


def test_set_params_args_needs_values():
    with pytest.raises(RecsysError, match="at least one value"):
        set_params_args({})


# ---------------------------------------------------------------- comparison table

SHOWN = [
    {"Experiment": None, "rev": "workspace", "State": None, "ss4rec.d_state": 32.0},
    {
        "Experiment": "e1",
        "rev": "aaaaaaa",
        "State": "Success",
        "Created": "10:00",
        "ss4rec.d_state": 16.0,
        "metrics/scores/ss4rec.json:test.rmse": 0.91234,
        "metrics/scores/ss4rec.json:test.ndcg@10": 0.05,
        "metrics/scores/ss4rec.json:test.warm.rmse": 0.8,
        "baselines.bias.test.rmse": 1.0,
        "data/tiny/ratings.csv": "abc123",
    },
    {
        "Experiment": "e2",
        "rev": "bbbbbbb",
        "State": "Failed",
        "Created": "10:01",
        "ss4rec.d_state": 32.0,
        "metrics/scores/ss4rec.json:test.rmse": "!",
        "metrics/scores/ss4rec.json:test.ndcg@10": "!",
        "metrics/scores/ss4rec.json:test.warm.rmse": "!",
        "baselines.bias.test.rmse": "!",
        "data/tiny/ratings.csv": "abc123",
    },
]


def test_headline_rows_have_grid_params_test_rmse_and_ndcg_and_state():
    rows = comparison_rows(SHOWN, ["e1", "e2"], {"ss4rec.d_state": [16, 32]}, headline=True)
    assert rows == [
        {
            "Experiment": "e1",
            "rev": "aaaaaaa",
            "State": "Success",
            "ss4rec.d_state": 16.0,
            "metrics/scores/ss4rec.json:test.rmse": 0.91234,
            "metrics/scores/ss4rec.json:test.ndcg@10": 0.05,
        },
        {
            "Experiment": "e2",
            "rev": "bbbbbbb",
            "State": "Failed",
            "ss4rec.d_state": 32.0,
            "metrics/scores/ss4rec.json:test.rmse": None,  # exp_show's "!": no value
            "metrics/scores/ss4rec.json:test.ndcg@10": None,
        },
    ]
    assert render_table(rows).splitlines() == [
        "Experiment  rev      ss4rec.d_state  ss4rec test.rmse  ss4rec test.ndcg@10  State",
        "e1          aaaaaaa  16              0.9123            0.0500               Success",
        "e2          bbbbbbb  32              -                 -                    Failed",
    ]
    assert unsuccessful(rows, ["e1", "e2", "e3"]) == ["e2", "e3"]  # e3: never shown


def test_grid_command_fails_naming_the_failed_experiment(tmp_path, monkeypatch, capsys):
    path = grid_file(tmp_path, {"params": {"ss4rec.d_state": [16, 32]}, "targets": ["x"]})
    calls = []

    def fake_dvc(*args: str, cwd=".", check=True, echo=None) -> str:
        calls.append(args)
        if "--queue" in args:
            return "Queued experiment 'e1' for future execution.\nQueued experiment 'e2' for ..."
        out = "Reproducing experiment 'e1'\ntraining...\nReproducing experiment 'e2'\n"
        for line in out.splitlines() if echo else []:  # DVC's lines, as they come
            echo(line)
        return out

    monkeypatch.setattr(experiments, "run_dvc", fake_dvc)
    monkeypatch.setattr(dvc.api, "exp_show", lambda repo: SHOWN)
    monkeypatch.chdir(tmp_path)  # no params.yaml here: values are checked against defaults
    assert main(["experiments", "grid", str(path), "--jobs", "2"]) == 1
    assert calls == [
        ("exp", "run", "--queue", "-S", "ss4rec.d_state=16,32", "x"),
        ("exp", "run", "--run-all", "--jobs", "2"),
    ]
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("e1          aaaaaaa  16")
    assert err.splitlines() == [
        "queued 2 experiment(s) over ss4rec.d_state: e1, e2",
        "Reproducing experiment 'e1'",
        "training...",
        "Reproducing experiment 'e2'",
        "recsys experiments: error: 1 of 2 experiment(s) failed: e2 "
        "(`dvc queue logs NAME` shows why)",
    ]
    assert main(["experiments", "grid", str(path), "--queue-only", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"queued": ["e1", "e2"]}


# ---------------------------------------------------------------- end to end, real DVC repo

TINY_SS4REC = {"d_model": 8, "n_layers": 1, "d_state": 4, "max_len": 10, "batch_size": 64}
PREDICTIONS = "artifacts/predictions/ss4rec.parquet"


def tiny_ss4rec_repo(repo: Path) -> None:
    """The tiny dataset and a 1-epoch, 8-wide SS4Rec, committed."""
    use_tiny_dataset(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ss4rec"].update(TINY_SS4REC, epochs=1)
    params["abtest"].update(n_bootstrap=200, n_permutations=2000)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "commit", "-qam", "tiny SS4Rec")


def predictions_at(repo: Path, rev: str) -> pd.DataFrame:
    """An experiment's SS4Rec test predictions, read from its commit."""
    with dvc.api.open(PREDICTIONS, repo=str(repo), rev=rev, mode="rb") as fh:
        return pd.read_parquet(io.BytesIO(fh.read()))


def expected_comparison(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, dict]:
    """Per metric: means, B - A, t CI, paired t p, Holm p and d_z, recomputed with scipy."""
    both = a.merge(b, on=["user_id", "item_id", "timestamp", "rating"], suffixes=("_a", "_b"))
    assert len(both) == len(a) == len(b)
    expected = {}
    for metric in AB_METRICS:
        for tag in "ab":
            both[f"{metric}_{tag}"] = [
                outcome(metric, p, r, k)
                for p, r, k in zip(
                    both[f"pred_rating_{tag}"], both["rating"], both[f"rank_{tag}"], strict=True
                )
            ]
        users = both.groupby("user_id")[[f"{metric}_a", f"{metric}_b"]].mean()
        ua, ub = users[f"{metric}_a"].to_numpy(), users[f"{metric}_b"].to_numpy()
        t = sps.ttest_rel(ub, ua)
        ci = t.confidence_interval(0.95)
        diff = ub - ua
        perm = sps.permutation_test(
            (diff,), np.mean, permutation_type="samples", n_resamples=20_000, random_state=0
        )
        expected[metric] = {
            "n_users": len(users),
            "mean_a": ua.mean(),
            "mean_b": ub.mean(),
            "estimate": diff.mean(),
            "ci_low": ci.low,
            "ci_high": ci.high,
            "p_value": t.pvalue,
            "effect_size_dz": diff.mean() / diff.std(ddof=1),
            "p_permutation_scipy": perm.pvalue,
        }
    for metric, adjusted in zip(
        AB_METRICS, holm([expected[m]["p_value"] for m in AB_METRICS]), strict=True
    ):
        expected[metric]["p_value_holm"] = adjusted
    return expected


def close(got: float | None, want: float) -> bool:
    """Equal to 1e-9 relative, with JSON's null standing for NaN."""
    if got is None:
        return math.isnan(want)
    return got == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_a_two_experiment_sweep_then_compare_against_a_recomputation(dvc_repo, tmp_path):
    tiny_ss4rec_repo(dvc_repo)
    grid = grid_file(
        tmp_path, {"params": {"ss4rec.d_state": [2, 6]}, "targets": ["evaluate@ss4rec"]}
    )
    sweep = recsys_cli(dvc_repo, "experiments", "grid", str(grid), "--json")
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    rows = json.loads(sweep.stdout)
    assert sorted(row["ss4rec.d_state"] for row in rows) == [2, 6]
    assert {row["State"] for row in rows} == {"Success"}
    assert all(isinstance(row["test.rmse"], float) for row in rows)
    assert sweep.stderr.count("Reproducing experiment") == 2

    shown = {row["Experiment"]: row for row in dvc.api.exp_show(repo=str(dvc_repo))}
    by_state = {shown[row["Experiment"]]["ss4rec.d_state"]: row["Experiment"] for row in rows}
    first, second = by_state[2], by_state[6]
    for name, d_state in ((first, 2), (second, 6)):
        assert shown[name]["ss4rec.d_state"] == d_state
        assert shown[name]["ss4rec.n_layers"] == 1
        for key in ("test.rmse", "test.ndcg@10", "dvclive/ss4rec/metrics.json:val.ndcg@10"):
            assert isinstance(shown[name][key], float), (name, key)

    compared = recsys_cli(dvc_repo, "compare", first, second, "--json")
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert (result["a"]["experiment"], result["b"]["experiment"]) == (first, second)
    assert result["b"]["rev"].startswith(shown[second]["rev"])
    a = predictions_at(dvc_repo, shown[first]["rev"])
    b = predictions_at(dvc_repo, shown[second]["rev"])
    expected = expected_comparison(a, b)
    assert result["n_events"] == len(a)
    for metric, want in expected.items():
        got = result["metrics"][metric]
        for key in ("mean_a", "mean_b", "estimate", "ci_low", "ci_high", "p_value"):
            assert close(got[key], want[key]), (metric, key, got[key], want[key])
        assert close(got["p_value_holm"], want["p_value_holm"]), metric
        assert close(got["effect_size_dz"], want["effect_size_dz"]), metric
        assert got["n_users"] == want["n_users"]
        assert abs(got["p_permutation"] - want["p_permutation_scipy"]) < 0.05, metric
    assert first in result["verdict"] and second in result["verdict"]

    table = recsys_cli(dvc_repo, "compare", first, second)
    assert table.returncode == 0 and result["verdict"] in table.stdout
    print(table.stdout)  # shown with -s: the readable comparison
    missing = recsys_cli(dvc_repo, "compare", "no-such-exp", second)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "recsys compare: error: 'no-such-exp' is neither an experiment nor a git revision "
        "(`dvc exp show` lists experiments; a failed or still queued one has no results)"
    ]
