"""`recsys bench etl` on a small synthetic dataset: the JSON contract and sane figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_etl_json_contract_and_cache_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "recsys.cli", "bench", "etl", "--rows", "20000", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["rows"] == 20_000 and result["test_rows"] == 2_000  # test_frac 0.1
    assert 0 < result["split_s"] <= result["total_s"] <= result["process_s"]
    assert result["batches_s"] == pytest.approx(result["total_s"] - result["split_s"], abs=0.02)
    assert 50 < result["peak_rss_mb"] < 6_000
    assert "generating 20,000 synthetic ratings" in first.stderr
    csv = tmp_path / "cache/synth/rows_20000/ratings.csv"
    mtime = csv.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and "generating" not in again.stderr  # the cache is reused
    assert csv.stat().st_mtime_ns == mtime
