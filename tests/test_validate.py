"""`recsys validate`: every bad-input kind gives its message, its exit code and its quarantine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys.cli import main
from recsys.etl.validate import screen_ratings

HEADER = "user_id,item_id,rating,timestamp\n"
GOOD = "1,10,4,880000000\n2,10,3.5,880000060\n"  # two valid rows (lines 2 and 3)


def run(tmp_path: Path, body: bytes | str, capsys, *extra: str) -> tuple[int, str, str, Path]:
    """Write `body` to ratings.csv, run `recsys validate` in process; (code, out, err, file)."""
    path = tmp_path / "ratings.csv"
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    code = main(["validate", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, path


def quarantined(path: Path) -> pd.DataFrame:
    return pd.read_csv(path.with_name(path.name + ".quarantine.csv"), dtype={"raw": str})


@pytest.mark.parametrize(
    ("bad_line", "reason", "message"),
    [
        ("3,10,4,880000000,7", "malformed", "expected 4 comma-separated fields, got 5"),
        ("3,10,4", "malformed", "expected 4 comma-separated fields, got 3"),
        ("3,10,abc,880000000", "not_a_number", "not a number"),
        ("3,10,NaN,880000000", "not_a_number", "not a number (or is NaN)"),
        ("3,10,,880000000", "missing_field", "a required field is empty"),
        ("3,10,6,880000000", "rating_out_of_scale", "rating outside"),
        ("3,10,0,880000000", "rating_out_of_scale", "rating outside"),
        ("3,10,3.7,880000000", "rating_out_of_scale", "rating outside"),
        ("3,10,4,-60", "bad_timestamp", "non-negative"),
        ("3,10,4,4102444800", "future_timestamp", "in the future"),  # 2100-01-01
        ("1,10,4,880000000", "duplicate", "duplicate of an earlier"),
        ("0,10,4,880000000", "bad_id", "positive integers"),
        ("3,1.5,4,880000000", "bad_id", "positive integers"),
    ],
)
def test_bad_row_is_quarantined_with_line_and_reason(tmp_path, capsys, bad_line, reason, message):
    code, out, err, path = run(tmp_path, HEADER + GOOD + bad_line + "\n", capsys)
    assert code == 3
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"{path}:4: ")]  # file, line
    assert message in line and repr(bad_line) in line  # reason and the raw text
    assert f"2 rows valid, 1 quarantined -> {path}.quarantine.csv" in out
    q = quarantined(path)
    assert q.to_dict("records") == [{"line": 4, "reason": reason, "raw": bad_line}]


def test_truncated_file_quarantines_the_cut_line(tmp_path, capsys):
    code, _, err, path = run(tmp_path, HEADER + GOOD + "3,11,4,8800", capsys)
    assert code == 3
    assert f"{path}:4: truncated: the last line has no newline: '3,11,4,8800'" in err
    assert quarantined(path)["reason"].tolist() == ["truncated"]


def test_bom_and_crlf_are_removed_with_a_note_and_the_file_is_valid(tmp_path, capsys):
    body = ("\ufeff" + HEADER + GOOD).replace("\n", "\r\n")
    code, out, err, path = run(tmp_path, body, capsys)
    assert code == 0
    assert f"{path}:1: UTF-8 byte-order mark removed" in err
    assert "all 2 rows valid" in out
    assert not path.with_name(path.name + ".quarantine.csv").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "unusable: the file is empty"),
        (b"\n  \n", "unusable: the file is empty"),
        (b"PK\x03\x04\x00\x00binary", "unusable: not a text file"),
        (b"\xff\xfe1,2\n", "unusable: not UTF-8 text"),
        (HEADER.replace(",", ";") + "1;10;4;880000000\n", "1: unusable: wrong delimiter (';')"),
        (HEADER.replace(",", "\t") + "1\t10\t4\t880000000\n", "1: unusable: wrong delimiter (tab)"),
        ("1,10,4,880000000\n", "1: unusable: no header line"),
        ("user_id,item_id,rating\n1,10,4\n", "missing ['timestamp']"),
        ("user_id,item_id,rating,timestamp,tag\n1,10,4,8,x\n", "extra ['tag']"),
        (HEADER, "unusable: a header but no data rows"),
    ],
)
def test_unusable_file_exits_1_with_one_line(tmp_path, capsys, body, message):
    code, out, err, path = run(tmp_path, body, capsys)
    assert code == 1
    assert err.startswith(f"recsys validate: error: {path}")
    assert message in err
    assert err.count("\n") == 1 and out == ""


def test_file_without_any_valid_row_is_unusable_but_rows_are_kept(tmp_path, capsys):
    code, _, err, path = run(tmp_path, HEADER + "1,10,9,880000000\n1,11,x,1\n", capsys)
    assert code == 1
    assert "unusable: none of its 2 rows is valid" in err
    assert quarantined(path)["reason"].tolist() == ["rating_out_of_scale", "not_a_number"]


def test_quarantine_option_and_valid_rows_kept(tmp_path, capsys):
    out_path = tmp_path / "bad" / "rows.csv"
    body = HEADER + GOOD + "x,1,1,1\n" + "5,5,5,880000001\n"
    code, out, _, _ = run(tmp_path, body, capsys, "--quarantine", str(out_path))
    assert code == 3
    assert f"3 rows valid, 1 quarantined -> {out_path}" in out
    assert pd.read_csv(out_path)["line"].tolist() == [4]


def test_usage_errors_exit_2_without_traceback(tmp_path):
    for args in (["validate", str(tmp_path / "missing.csv")], ["validate"]):
        proc = subprocess.run(
            [sys.executable, "-m", "recsys.cli", *args], capture_output=True, text=True
        )
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
    assert "no such file" in proc.stderr or "required" in proc.stderr


def test_real_subprocess_exit_code_and_quarantine(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + GOOD + "1,10,4,880000000\n")
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 3, proc.stderr
    assert f"{path}:4: duplicate" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_screen_ratings_keeps_good_rows_and_quarantines_bad_ones():
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "item_id": [5, 5, 6, 7],
            "rating": [4.0, 4.0, 11.0, 2.0],
            "timestamp": [880_000_000, 880_000_000, 880_000_001, 880_000_002],
        }
    )
    screened = screen_ratings(ratings)
    assert screened.valid["user_id"].tolist() == [1, 3]
    assert screened.quarantine[["row", "reason"]].to_dict("records") == [
        {"row": 2, "reason": "duplicate"},
        {"row": 3, "reason": "rating_out_of_scale"},
    ]


def test_fetch_source_path_quarantines_bad_rows_with_the_same_rules(tmp_path, capsys):
    from recsys.data.fetch import fetch
    from recsys.io import md5_file
    from tests.test_fetch import grouplens_100k_members, write_zip

    members = grouplens_100k_members()
    good = members["ml-100k/u.data"]
    members["ml-100k/u.data"] = good + "9\t1\t7\t881250949\n" + good.splitlines(True)[0]
    archive = write_zip(tmp_path / "ml-100k.zip", members, "latin-1")
    result = fetch(source=str(archive), data_dir=tmp_path / "data", md5=md5_file(archive))
    n_good = good.count("\n")
    assert result.n_ratings == n_good and result.n_quarantined == 2
    assert "2 bad rows in" in result.summary()
    q = pd.read_csv(tmp_path / "data/ml-100k/ratings.quarantine.csv")
    user, _, rating, _ = (float(x) for x in good.splitlines()[0].split("\t"))
    assert q[["row", "reason", "user_id", "rating"]].to_dict("records") == [
        {"row": n_good + 1, "reason": "rating_out_of_scale", "user_id": 9, "rating": 7},
        {"row": n_good + 2, "reason": "duplicate", "user_id": user, "rating": rating},
    ]
    assert "2 ratings rejected" in capsys.readouterr().err
