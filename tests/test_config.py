"""params.yaml loading, one-line errors naming the key, presets that keep comments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recsys.config import Params, apply_preset, load_params, parse_params, pipeline_days
from recsys.errors import RecsysError
from tests.conftest import PROJECT_ROOT


def test_real_params_file_loads_and_matches_defaults():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params == Params()  # the committed file is the built-in defaults


def test_dvc_yaml_vars_list_the_days_of_params():
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    (days,) = [v["days"] for v in pipeline["vars"] if "days" in v]
    assert days == pipeline_days(Params().etl.n_days) == pipeline_days(Params().abtest.n_days)
    assert days["1"]["prev"] == "batches/day_01.parquet"  # day 1 chains on its own batch
    assert days["20"] == {"nn": "20", "prev": "metrics/abtest/day_19.json"}
    assert "days" not in Params().etl.model_fields and "days" not in Params().abtest.model_fields


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"split": {"test_fracc": 0.1}}, "split.test_fracc: unknown key"),
        ({"splitt": {}}, "splitt: unknown key"),
        ({"split": {"val_frac": "ten"}}, "split.val_frac: Input should be a valid number"),
        ({"split": {"min_user_ratings": 0}}, "split.min_user_ratings: Input should be greater"),
        ({"split": {"val_frac": 0.5, "test_frac": 0.5}}, "val_frac + test_frac must be below 1"),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_key(raw, expected):
    with pytest.raises(RecsysError) as info:
        parse_params(raw, source="params.yaml")
    message = str(info.value)
    assert message.startswith("params.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_invalid_yaml_names_the_line(tmp_path: Path):
    bad = tmp_path / "params.yaml"
    bad.write_text("split:\n  val_frac: [0.1\n")
    with pytest.raises(RecsysError, match=r"params.yaml: line \d+ is not valid YAML"):
        load_params(bad)


def test_preset_merges_into_params_and_keeps_comments(tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((PROJECT_ROOT / "params.yaml").read_text())
    presets = tmp_path / "configs"
    presets.mkdir()
    (presets / "tiny.yaml").write_text("data:\n  dataset: synth\nsplit:\n  val_frac: 0.2\n")

    params = apply_preset("tiny", params_path=params_path, presets_dir=presets)

    assert params.data.dataset == "synth" and params.split.val_frac == 0.2
    assert params.split.test_frac == 0.1  # untouched keys keep their value
    text = params_path.read_text()
    assert "# The pipeline's hyper-parameters" in text and "# k-core on train rows only" in text
    assert yaml.safe_load(text)["split"]["val_frac"] == 0.2

    apply_preset("default", params_path=params_path, presets_dir=presets)
    assert load_params(params_path) == Params()


def test_preset_with_a_bad_value_leaves_params_untouched(tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((PROJECT_ROOT / "params.yaml").read_text())
    before = params_path.read_bytes()
    (tmp_path / "bad.yaml").write_text("split:\n  val_frac: 2\n")
    with pytest.raises(RecsysError, match=r"split\.val_frac"):
        apply_preset("bad", params_path=params_path, presets_dir=tmp_path)
    assert params_path.read_bytes() == before


def test_cli_unknown_preset_is_one_line_with_choices(tmp_path: Path):
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "smoke.yaml").write_text("data:\n  dataset: synth\n")
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "preset", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "recsys preset: error: no preset 'nope' in configs/ (choose from: default, smoke)"
    ]
