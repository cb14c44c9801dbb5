"""`recsys validate`: every bad-input kind gives its message, its exit code and its quarantine."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.etl import validate as validate_module
from recsys.etl.validate import screen_ratings, validate_file

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


# --- bad files: nothing lost, nothing altered, one line per problem ------------------------------


def permissions_ignored() -> bool:
    """Whether this process reads a mode-000 file (root with CAP_DAC_OVERRIDE does)."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return False
        return True


PERMISSIONS_IGNORED = permissions_ignored()
BAD = "x,1,1,1\n"  # one quarantined line (not a number)


def run_on(path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    """`recsys validate PATH ...` in process on an existing path; (code, out, err)."""
    code = main(["validate", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The single `recsys validate: error: ...` line (asserting there is nothing else)."""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("recsys validate: error: ")
    return err.rstrip("\n")


def test_ids_and_timestamps_are_exact_integers_never_floats(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        HEADER + "9007199254740993,9223372036854775807,4,880000000\n"
        "9007199254740992,+0012,4,880000001\n"
    )
    valid = validate_file(path).valid
    assert valid["user_id"].tolist() == [9007199254740993, 9007199254740992]  # not merged
    assert valid["item_id"].tolist() == [2**63 - 1, 12]
    assert valid.dtypes.to_dict() == {
        "user_id": np.int64, "item_id": np.int64, "rating": np.float64, "timestamp": np.int64
    }  # fmt: skip


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("99999999999999999999,10,4,880000000", "bad_id"),  # above int64
        ("9223372036854775808,10,4,880000000", "bad_id"),  # int64 max + 1
        ("3,-7,4,880000000", "bad_id"),
        ("3,1e3,4,880000000", "bad_id"),  # a number, but not written as an integer
        ("3,10,4,880000000.5", "bad_timestamp"),
        ("3,10,4,8.8e8", "bad_timestamp"),
        ("3,10,4,99999999999999999999", "bad_timestamp"),
        ("3,10,4,+", "not_a_number"),  # a sign alone is no 0
    ],
)
def test_ids_and_timestamps_that_are_no_int64_are_quarantined_verbatim(
    tmp_path, capsys, bad_line, reason
):
    code, out, err, path = run(tmp_path, HEADER + GOOD + bad_line + "\n", capsys)
    assert code == 3 and "2 rows valid, 1 quarantined" in out
    assert quarantined(path).to_dict("records") == [{"line": 4, "reason": reason, "raw": bad_line}]
    assert f"{path}:4: " in err


def test_screen_ratings_keeps_large_ids_distinct():
    ratings = pd.DataFrame(
        {
            "user_id": np.array([2**53, 2**53 + 1], dtype="int64"),  # equal as float64
            "item_id": [5, 5],
            "rating": [4.0, 4.0],
            "timestamp": [880_000_000, 880_000_000],
        }
    )
    screened = screen_ratings(ratings)
    assert screened.quarantine.empty
    assert screened.valid["user_id"].tolist() == [2**53, 2**53 + 1]


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
def test_quarantine_is_never_the_input(tmp_path, capsys, monkeypatch, how):
    path = tmp_path / "ratings.csv"
    body = (HEADER + GOOD + BAD).encode()
    path.write_bytes(body)
    monkeypatch.chdir(tmp_path)
    target = {"same path": path, "relative path": Path("ratings.csv")}.get(how)
    if how == "symlink":
        target = tmp_path / "link.csv"
        target.symlink_to(path)
    elif how == "hard link":
        target = tmp_path / "hard.csv"
        os.link(path, target)
    code, out, err = run_on(path, capsys, "--quarantine", str(target))
    assert code == 2 and out == ""
    assert "is the input file itself" in one_error_line(err)
    assert path.read_bytes() == body


def test_quarantine_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    other = tmp_path / "notes.csv"
    other.write_text("precious\n")
    code, _, err, path = run(tmp_path, HEADER + GOOD + BAD, capsys, "--quarantine", str(other))
    assert code == 2 and "is not a quarantine file" in one_error_line(err)
    assert other.read_text() == "precious\n"
    default = tmp_path / "ratings.csv.quarantine.csv"
    default.write_text("mine\n")
    code, _, err = run_on(path, capsys)
    assert code == 2 and f"{default}: exists and is not a quarantine file" in one_error_line(err)
    assert default.read_text() == "mine\n"
    default.unlink()
    assert run_on(path, capsys)[0] == 3 and run_on(path, capsys)[0] == 3  # ours: replaced


def test_quarantine_naming_a_directory_is_one_line(tmp_path, capsys):
    folder = tmp_path / "q"
    folder.mkdir()
    code, _, err, _ = run(tmp_path, HEADER + GOOD + BAD, capsys, "--quarantine", str(folder))
    assert code == 2 and f"{folder}: is a directory" in one_error_line(err)
    assert list(folder.iterdir()) == []


def test_input_below_a_regular_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    code, _, err = run_on(blocker / "ratings.csv", capsys)  # open() fails even for root
    assert code == 2 and f"({blocker} is a file, not a folder)" in one_error_line(err)


def test_unreadable_input_is_one_line_even_as_root(tmp_path, capsys, monkeypatch):
    path = tmp_path / "ratings.csv"
    path.write_text(HEADER + GOOD)
    real_open = open

    def refusing_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(validate_module, "open", refusing_open, raising=False)
    code, _, err = run_on(path, capsys)
    line = one_error_line(err)
    assert code == 1 and f"{path}: cannot read (permission denied); make it readable" in line


@pytest.mark.skipif(PERMISSIONS_IGNORED, reason="running as root: mode 000 does not stop reads")
def test_mode_000_input_is_one_line(tmp_path, capsys):
    path = tmp_path / "ratings.csv"
    path.write_text(HEADER + GOOD)
    path.chmod(0)
    try:
        code, _, err = run_on(path, capsys)
    finally:
        path.chmod(0o644)
    assert code == 1 and "cannot read (permission denied)" in one_error_line(err)


def test_quarantine_below_a_regular_file_is_one_line(tmp_path):
    path = tmp_path / "ratings.csv"
    body = HEADER + GOOD + BAD
    path.write_text(body)
    blocker = tmp_path / "f"
    blocker.write_text("x")
    args = ["validate", str(path), "--quarantine", str(blocker / "q.csv")]
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", *args], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert f"{blocker / 'q.csv'}: cannot write the quarantine file ({blocker} is a file" in (
        proc.stderr
    )
    assert path.read_text() == body and blocker.read_text() == "x"


@pytest.mark.skipif(PERMISSIONS_IGNORED, reason="running as root: read-only folders are writable")
def test_read_only_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "ratings.csv"
    path.write_text(HEADER + GOOD + BAD)
    folder.chmod(0o555)
    try:
        code, _, err = run_on(path, capsys)
    finally:
        folder.chmod(0o755)
    assert code == 1 and f"the folder {folder} is not writable" in one_error_line(err)


def test_quarantine_write_failure_is_one_line(tmp_path, capsys, monkeypatch):
    @contextlib.contextmanager
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")
        yield path

    monkeypatch.setattr(validate_module, "atomic_path", full_disk)
    code, _, err, path = run(tmp_path, HEADER + GOOD + BAD, capsys)
    line = one_error_line(err.splitlines(True)[-1])
    assert code == 1
    assert f"{path}.quarantine.csv: cannot write the quarantine file (No space left" in line


def test_long_lines_are_echoed_cut_with_their_line_number(tmp_path, capsys):
    long_line = "1," * 2_500_000  # 5 MB, malformed
    code, _, err, path = run(tmp_path, HEADER + GOOD + long_line + "\n", capsys)
    assert code == 3 and len(err) < 1_000
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"{path}:4: ")]
    assert line.endswith(f"…({len(long_line) - 200:,} more characters)")
    assert quarantined(path)["raw"].tolist() == [long_line]  # the quarantine keeps it whole


def test_a_huge_header_is_echoed_cut(tmp_path, capsys):
    code, _, err, path = run(tmp_path, HEADER.strip() + "," + "x" * 1_000_000 + "\n", capsys)
    assert code == 1 and len(err) < 1_000
    assert f"{path}:1: unusable: header " in one_error_line(err) and "more characters)" in err


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_crlf_and_cr_only_files_give_the_same_result_as_lf(tmp_path, capsys, ending):
    body = HEADER + GOOD + "3,10,abc,880000000\n" + "4,11,4,880000001\n" + "5,12,4,8800"
    results = []
    for name, text in (("lf", body), ("other", body.replace("\n", ending))):
        (tmp_path / name).mkdir()
        code, out, err, path = run(tmp_path / name, text, capsys)
        assert len(err) < 1_000  # a CR-only file is lines, not one huge line
        q_bytes = path.with_name(path.name + ".quarantine.csv").read_bytes()
        problems = [ln for ln in err.splitlines() if "read as LF" not in ln]
        results.append(
            (
                code,
                out.replace(str(path), "*"),
                "\n".join(problems).replace(str(path), "*"),
                q_bytes,
            )
        )
        assert validate_file(path).valid.equals(validate_file(tmp_path / "lf/ratings.csv").valid)
    assert results[0] == results[1]
    assert results[0][0] == 3 and "3 rows valid, 2 quarantined" in results[0][1]
    assert ("CR only" if ending == "\r" else "CRLF") in err


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-16-le", True), ("utf-16-be", True), ("utf-16-le", False), ("utf-16-be", False)],
)
def test_utf16_is_named_not_called_binary(tmp_path, capsys, encoding, bom):
    body = (("\ufeff" if bom else "") + HEADER + GOOD).encode(encoding)
    code, out, err, _ = run(tmp_path, body, capsys)
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert "looks like UTF-16" in line and "save it as UTF-8" in line and "NUL" not in line


def test_a_latin1_byte_is_reported_by_line_and_column(tmp_path, capsys):
    body = (HEADER + "1,10,4,880000000\n" + "2,10,3.5,88000006é\n").encode("latin-1")
    code, _, err, path = run(tmp_path, body, capsys)
    line = one_error_line(err)
    assert code == 1
    assert f"{path}:3: unusable: not UTF-8 text (byte 0xE9 at column 18)" in line


def test_a_directory_or_fifo_is_named_as_such(tmp_path, capsys):
    folder = tmp_path / "ratings.csv"
    folder.mkdir()
    code, _, err = run_on(folder, capsys)
    assert code == 2 and f"{folder}: is a directory" in one_error_line(err)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    code, _, err = run_on(fifo, capsys)  # refused without opening it (which would block)
    assert code == 2 and f"{fifo}: is not a regular file but a named pipe" in one_error_line(err)


@pytest.mark.parametrize("explicit", [False, True])
def test_stale_quarantine_is_removed_once_the_file_is_fixed(tmp_path, capsys, explicit):
    out_path = tmp_path / "bad rows.csv" if explicit else tmp_path / "ratings.csv.quarantine.csv"
    extra = ["--quarantine", str(out_path)] if explicit else []
    assert run(tmp_path, HEADER + GOOD + BAD, capsys, *extra)[0] == 3
    assert out_path.is_file()
    code, out, _, path = run(tmp_path, HEADER + GOOD, capsys, *extra)
    assert code == 0 and not out_path.exists()
    assert out == f"{path}: all 2 rows valid; removed the stale quarantine file {out_path}\n"
