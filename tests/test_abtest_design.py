"""What the A/B design could detect and what it is: MDE, A/A replays through the stage's own
code, B vs A across training seeds, segment interactions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from recsys.abtest import aa
from recsys.abtest import sequential as seq
from recsys.abtest.analysis import segment_analysis
from recsys.abtest.fake import fake_experiment, write_experiment
from recsys.config import AbtestParams
from recsys.errors import RecsysError
from tests.test_abtest_stage import PRED_A, PRED_B, WARM, run_in_process


def test_detectable_z_is_the_textbook_formula_for_one_look_and_has_its_power_over_20():
    one = seq.boundaries(np.array([50.0]), np.array([1.0]), 0.05 / 3, "power", 3.0)
    closed = sps.norm.isf(0.05 / 6) + sps.norm.isf(0.2)  # z_{alpha/2m} + z_{power}
    assert seq.detectable_z(np.array([50.0]), one, 0.8) == pytest.approx(closed, abs=1e-4)
    # 20 looks: a drift of detectable_z / sqrt(I_K) crosses in 80 % of simulated experiments
    info = np.cumsum(np.r_[30.0, np.random.default_rng(0).integers(5, 40, 19)])
    spend = np.arange(1, 21) / 20
    bounds = seq.boundaries(info, spend, 0.05 / 3, "power", 3.0)
    dz = seq.detectable_z(info, bounds, 0.8)
    assert dz > closed  # looking every day costs a little power
    rng = np.random.default_rng(1)
    steps = np.diff(info, prepend=0.0)
    drift = dz / math.sqrt(info[-1])
    score = np.cumsum(drift * steps + np.sqrt(steps) * rng.standard_normal((40_000, 20)), 1)
    crossed = (np.abs(score / np.sqrt(info)) >= bounds).any(1).mean()
    assert crossed == pytest.approx(0.8, abs=0.012)


def test_aa_replays_through_the_stage_keep_the_false_positive_rate(capsys):
    # 12 replays: with a true rate of 5 %, 3+ rejections happen with probability 2 %;
    # naive daily t-tests (36 % per the sequential tests) would give 3+ in ~85 % of runs
    result = aa.simulate(12, AbtestParams(), n_events=10_000)
    for design in ("paired", "randomised"):
        assert result[design]["false_positives"] <= 2, result
        assert result[design]["fixed_sample_p_uniform_ks_p"] > 0.001
    assert result["runs"] == 12 and result["rule"].startswith("any success metric")
    assert aa.main(["--runs", "1", "--events", "2000", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bench"] == "aa" and printed["runs"] == 1


def other_seed(preds: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same model 'trained with another seed': jittered ratings and ranks."""
    rng = np.random.default_rng(seed)
    rank = np.maximum(1, preds["rank"] + rng.integers(-3, 4, len(preds)))
    return preds.assign(
        pred_rating=preds["pred_rating"] + rng.normal(0, 0.2, len(preds)), rank=rank
    )


def ndcg(frame: pd.DataFrame) -> np.ndarray:
    r = frame["rank"].to_numpy(float)
    return np.where(r <= 10, 1 / np.log2(r + 1), 0.0)


def test_seeds_compare_models_by_seed_averaged_outcomes_and_pair_spread(tmp_path):
    from tests.test_abtest_stage import PROJECT_ROOT

    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    experiment = fake_experiment(n_events=2_000, n_users=40, seed=0)
    write_experiment(experiment, tmp_path / "batches", tmp_path / PRED_A, tmp_path / PRED_B)
    (tmp_path / "artifacts/split").mkdir(parents=True)
    pd.DataFrame({"user_id": WARM}).to_parquet(tmp_path / "artifacts/split/train.parquet")
    a2, b2 = other_seed(experiment.predictions_a, 1), other_seed(experiment.predictions_b, 2)
    a2.to_parquet(tmp_path / "a2.parquet")
    b2.to_parquet(tmp_path / "b2.parquet")
    seeds = {"seed_predictions_a": [str(tmp_path / "a2.parquet")],
             "seed_predictions_b": [str(tmp_path / "b2.parquet")]}  # fmt: skip
    doc = run_in_process(tmp_path, 1, **seeds)
    block = doc["seeds"]
    assert (block["n_seeds_a"], block["n_seeds_b"]) == (2, 2)
    assert doc["checkpoints"].startswith("2 seeds of A, 2 of B")
    assert "one checkpoint each" not in doc["decision"]["sentence"]

    # by hand: day 1's events, each model's NDCG averaged over its two seeds, per user
    keys = ["user_id", "item_id", "timestamp"]
    batch = experiment.batches[0]
    scores = {
        name: ndcg(batch[keys].merge(frame, on=keys, how="left"))
        for name, frame in [("a1", experiment.predictions_a), ("a2", a2),
                            ("b1", experiment.predictions_b), ("b2", b2)]
    }  # fmt: skip
    users = batch["user_id"].to_numpy()
    diff = (scores["b1"] + scores["b2"]) / 2 - (scores["a1"] + scores["a2"]) / 2
    per_user = pd.Series(diff).groupby(users).mean()
    result = block["metrics"]["ndcg@10"]
    assert result["seed_averaged"]["estimate"] == pytest.approx(per_user.mean())
    assert result["seed_averaged"]["p_value"] == pytest.approx(sps.ttest_1samp(per_user, 0).pvalue)
    pairs = [
        pd.Series(scores[b] - scores[a]).groupby(users).mean().mean()
        for a in ("a1", "a2") for b in ("b1", "b2")
    ]  # fmt: skip
    assert result["pair_estimates"] == pytest.approx(pairs)
    assert result["pair_sd"] == pytest.approx(np.std(pairs, ddof=1))

    a2.iloc[5:].to_parquet(tmp_path / "a2.parquet")  # a seed file missing an event
    with pytest.raises(RecsysError, match=r"a2.parquet: no prediction for day_01.parquet row"):
        run_in_process(tmp_path, 1, **seeds)


def test_segment_interaction_is_welch_on_the_groups_per_user_differences():
    rng = np.random.default_rng(5)
    n = 40
    users = pd.DataFrame({"user_id": np.arange(n), "n_events": rng.integers(1, 30, n)})
    first = np.arange(n) < 15
    for metric in ("hit@10", "ndcg@10", "rr@10", "sq_err"):
        users[f"{metric}_a"] = rng.random(n)
        users[f"{metric}_b"] = (
            users[f"{metric}_a"] + np.where(first, 0.3, 0.0) + rng.normal(0, 0.1, n)
        )
    out = segment_analysis(users, {"history": (("warm", "cold"), first)}, AbtestParams())
    block = out["history"]["metrics"]["ndcg@10"]
    diff = (users["ndcg@10_b"] - users["ndcg@10_a"]).to_numpy()
    welch = sps.ttest_ind(diff[first], diff[~first], equal_var=False)
    assert block["interaction_per_user"]["p_value"] == pytest.approx(welch.pvalue)
    assert block["interaction_per_user"]["estimate"] == pytest.approx(
        diff[first].mean() - diff[~first].mean()  # warm minus cold
    )
    assert block["warm"]["n_users"] == 15 and block["cold"]["n_users"] == 25
    assert block["warm"]["per_user"]["estimate"] == pytest.approx(diff[first].mean())
