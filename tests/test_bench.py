"""`recsys bench scan`: the record contract, a real measured case, a missing peer."""

from __future__ import annotations

import ast
import json

import pytest

from recsys.bench import scan as bench
from recsys.cli import main

KEYS = {"layer", "impl", "B", "L", "fwd_bwd_ms", "peak_mb"}


@pytest.mark.slow  # two fresh interpreters importing torch
def test_a_real_case_measures_time_and_memory_in_subprocesses():
    [record] = bench._length_records("time_aware", 2, 4, {"ours": 2})
    assert record.keys() >= KEYS, record
    assert (record["layer"], record["impl"], record["B"], record["L"]) == (
        "time_aware",
        "ours",
        2,
        4,
    )
    assert record["fwd_bwd_ms"] > 0 and record["peak_mb"] >= 0


def test_a_missing_peer_is_an_error_record_not_a_crash(monkeypatch, capsys):
    monkeypatch.setitem(bench.PEER_PACKAGE, "mambapy", "no_such_package_for_the_test")
    # the other peer counts as present whether or not it is installed: its runs are faked
    monkeypatch.setitem(bench.PEER_PACKAGE, "s5-pytorch", "json")
    calls = []

    def fake_subprocess(call, env):  # stands in for the interpreter only; records the call
        calls.append(call)
        if call.startswith("measure_memory"):
            return {"peak_mb": 2.0}
        impls = ast.literal_eval(call[call.index("{") : call.rindex("}") + 1])
        return {impl: {"fwd_bwd_ms": 1.0, "repeats": n, "threads": 1} for impl, n in impls.items()}

    monkeypatch.setattr(bench, "_subprocess", fake_subprocess)
    assert main(["bench", "scan", "--json", "--lengths", "8", "--batch", "2"]) == 0
    records = json.loads(capsys.readouterr().out)
    missing = [r for r in records if r["impl"] == "mambapy"]
    assert missing == [{"layer": "selective", "impl": "mambapy", "B": 2, "L": 8,
                        "error": "not installed (pip install .[bench])"}]  # fmt: skip
    assert {(r["layer"], r["impl"]) for r in records} == {
        (layer, impl) for layer, impls in bench.IMPLS.items() for impl in impls
    }
    assert all(r.keys() >= KEYS for r in records if r["impl"] != "mambapy")
    assert not any("mambapy" in call for call in calls)  # a missing peer is never run


def test_table_shows_ratios_against_ours():
    records = [
        {"layer": "selective", "impl": "ours", "B": 2, "L": 8, "fwd_bwd_ms": 10.0, "peak_mb": 5.0},
        {
            "layer": "selective",
            "impl": "mambapy",
            "B": 2,
            "L": 8,
            "fwd_bwd_ms": 25.0,
            "peak_mb": 50.0,
        },
    ]
    table = bench.render_table(records)
    assert "2.50x" in table and "10.00x" in table
