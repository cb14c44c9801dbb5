"""Ingest validation at the data boundary: a raw ratings CSV checked line by line.

The file must be UTF-8 text with the header `user_id,item_id,rating,timestamp`. A file that
cannot be read as that at all (empty, not text, no valid header, wrong delimiter, no data
rows) is unusable. Otherwise every data line is checked by the same row rules as the daily
batches (recsys.etl.quality) plus the line-level ones (field count, truncated last line); valid
rows are kept, invalid ones go to a quarantine CSV (`line,reason,raw`) with their reason.
"""

from __future__ import annotations

import io
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import EtlParams, load_params
from recsys.data.canonical import RATINGS_COLUMNS, RATINGS_DTYPES
from recsys.errors import RecsysError
from recsys.etl.quality import RowRules, row_reasons
from recsys.io import atomic_path

HEADER = ",".join(RATINGS_COLUMNS)
BOM = "\ufeff"
OTHER_DELIMITERS = {"\t": "tab", ";": "';'", "|": "'|'", " ": "space"}
BLOCK_LINES = 200_000  # lines parsed at a time: Python strings only for one block
EXIT_VALID, EXIT_UNUSABLE, EXIT_USAGE, EXIT_QUARANTINED = 0, 1, 2, 3

REASON_TEXT = {
    "malformed": "expected 4 comma-separated fields",
    "truncated": "truncated: the last line has no newline",
    "missing_field": "a required field is empty",
    "not_a_number": "a field is not a number (or is NaN)",
    "bad_id": "user_id / item_id must be positive integers",
    "rating_out_of_scale": "rating outside the release's scale",
    "bad_timestamp": "timestamp must be whole, non-negative epoch seconds",
    "future_timestamp": "timestamp is in the future",
    "duplicate": "duplicate of an earlier (user_id, item_id, timestamp)",
}


class UsageError(RecsysError):
    """A wrong argument (e.g. no such file): exit 2, like argparse's own usage errors."""

    exit_code = EXIT_USAGE


@dataclass
class Validation:
    """What validating a file found: the valid rows, the quarantined lines, notes."""

    path: Path
    valid: pd.DataFrame  # canonical columns and dtypes
    quarantine: pd.DataFrame  # line (1-based, header = 1), reason, raw
    notes: list[str] = field(default_factory=list)  # fixed on the way (BOM, CRLF)


def read_text(path: Path) -> tuple[str, list[str]]:
    """The file as text with a BOM removed; empty or binary files are unusable."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise RecsysError(f"{path}: unusable: the file is empty")
    if b"\x00" in data:
        raise RecsysError(f"{path}: unusable: not a text file (NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecsysError(f"{path}: unusable: not UTF-8 text (byte {err.start})") from None
    notes = []
    if text.startswith(BOM):
        text = text[1:]
        notes.append(f"{path}:1: UTF-8 byte-order mark removed")
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
        notes.append(f"{path}: Windows line endings (CRLF) read as LF")
    return text, notes


def check_header(path: Path, header: str) -> None:
    """Raise (unusable) unless the first line is exactly the canonical header."""
    if header == HEADER:
        return
    for delimiter, name in OTHER_DELIMITERS.items():
        if [f.strip() for f in header.split(delimiter)] == RATINGS_COLUMNS:
            raise RecsysError(f"{path}:1: unusable: wrong delimiter ({name}); expected commas")
    fields = [f.strip() for f in header.split(",")]
    if not set(fields) & set(RATINGS_COLUMNS):
        raise RecsysError(f"{path}:1: unusable: no header line (expected {HEADER!r})")
    missing = [c for c in RATINGS_COLUMNS if c not in fields]
    extra = [f for f in fields if f not in RATINGS_COLUMNS]
    what = (
        "; ".join(
            part
            for part in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "")
            if part
        )
        or "columns out of order"
    )
    raise RecsysError(f"{path}:1: unusable: header {header!r}: {what} (expected {HEADER!r})")


def split_fields(lines: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """(n, 4) raw string fields, and which lines do not have exactly 4 fields."""
    malformed = (lines.str.count(",") != 3).to_numpy()
    fields = lines.where(~malformed, ",,,").str.split(",", expand=True, n=3)
    fields.columns = RATINGS_COLUMNS
    return fields.apply(lambda col: col.str.strip()), malformed


def parse_numbers(fields: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Fields as float64 (NaN where unusable), plus masks: any field empty, any non-numeric."""
    numbers = fields.apply(lambda col: pd.to_numeric(col, errors="coerce")).astype("float64")
    empty = (fields == "").to_numpy()
    unparsable = numbers.isna().to_numpy() & ~empty
    return numbers, empty.any(axis=1), unparsable.any(axis=1)


def parse_block(lines: list[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Numbers (NaN where unusable) and parse masks (malformed, missing, not-a-number)."""
    series = pd.Series(lines, dtype="str").str.removesuffix("\n")
    fields, malformed = split_fields(series)
    numbers, empty, unparsable = parse_numbers(fields)
    masks = {
        "malformed": malformed,
        "missing_field": empty & ~malformed,
        "not_a_number": unparsable & ~malformed,
    }
    return numbers, masks


def parse_lines(stream: io.StringIO) -> tuple[pd.DataFrame, dict[str, np.ndarray], bool]:
    """Parse the data lines in blocks (bounded memory); True when the last ends in a newline."""
    numbers, masks, last = [], [], "\n"
    while block := list(itertools.islice(stream, BLOCK_LINES)):
        block_numbers, block_masks = parse_block(block)
        numbers.append(block_numbers)
        masks.append(block_masks)
        last = block[-1]
    if not numbers:
        return pd.DataFrame(columns=RATINGS_COLUMNS, dtype="float64"), {}, True
    merged = {key: np.concatenate([m[key] for m in masks]) for key in masks[0]}
    return pd.concat(numbers, ignore_index=True), merged, last.endswith("\n")


def raw_lines(text: str, wanted: np.ndarray) -> list[str]:
    """The text of the given 1-based line numbers (sorted), read in one streaming pass."""
    found, targets = [], iter(wanted.tolist())
    target = next(targets, None)
    for number, line in enumerate(io.StringIO(text), start=1):
        if number == target:
            found.append(line.removesuffix("\n"))
            target = next(targets, None)
            if target is None:
                break
    return found


def validate_text(path: Path, text: str, rules: RowRules) -> Validation:
    """Check the header (line 1) and every data line of `text`."""
    stream = io.StringIO(text)
    check_header(path, stream.readline().removesuffix("\n").strip())
    numbers, masks, complete = parse_lines(stream)
    if numbers.empty:
        raise RecsysError(f"{path}: unusable: a header but no data rows")
    rules.flags = {k: masks[k] for k in ("missing_field", "not_a_number")}
    reasons = row_reasons(numbers, rules)
    reasons[masks["malformed"]] = "malformed"
    if not complete:
        reasons[-1] = "truncated"
    bad = reasons != ""
    line_no = np.flatnonzero(bad) + 2  # the header is line 1
    quarantine = pd.DataFrame(
        {"line": line_no, "reason": reasons[bad], "raw": raw_lines(text, line_no)}
    )
    valid = numbers[~bad].astype(RATINGS_DTYPES).reset_index(drop=True)
    return Validation(path=path, valid=valid, quarantine=quarantine)


def default_rules(params_path: Path = Path("params.yaml")) -> RowRules:
    """The rating scale from params.yaml's etl section (built-in defaults without one)."""
    etl = load_params(params_path).etl if params_path.is_file() else EtlParams()
    # order is not checked: a raw file may be unsorted, and canonical writing sorts it
    return RowRules(
        etl.rating_min, etl.rating_max, etl.rating_step, now=int(time.time()), user_order=False
    )


def validate_file(path: Path, rules: RowRules | None = None) -> Validation:
    """Validate a ratings CSV; raise RecsysError (exit 1) when it is unusable as a whole."""
    text, notes = read_text(path)
    result = validate_text(path, text, rules or default_rules())
    result.notes = notes + result.notes
    return result


def problem_lines(result: Validation, limit: int) -> list[str]:
    """`file:line: reason: raw` for the first `limit` quarantined lines, then a count."""
    shown = result.quarantine.head(limit)
    lines = []
    for row in shown.itertuples():
        reason = REASON_TEXT.get(row.reason, row.reason)
        if row.reason == "malformed":
            reason += f", got {row.raw.count(',') + 1}"
        lines.append(f"{result.path}:{row.line}: {reason}: {row.raw!r}")
    if len(result.quarantine) > limit:
        lines.append(f"{result.path}: ... and {len(result.quarantine) - limit} more lines")
    return lines


def write_quarantine(result: Validation, out: Path) -> None:
    """Write the quarantined lines as CSV atomically."""
    with atomic_path(out) as tmp:
        result.quarantine.to_csv(tmp, index=False, lineterminator="\n")


def validate_command(path: Path, quarantine: str | None, max_messages: int = 20) -> int:
    """`recsys validate`: print problems and a summary; the exit code says if it is usable."""
    result = validate_file(path)
    for line in result.notes + problem_lines(result, max_messages):
        print(line, file=sys.stderr)
    n_bad = len(result.quarantine)
    if n_bad == 0:
        print(f"{path}: all {len(result.valid):,} rows valid")
        return EXIT_VALID
    out = Path(quarantine) if quarantine else path.with_name(path.name + ".quarantine.csv")
    write_quarantine(result, out)
    if result.valid.empty:
        raise RecsysError(f"{path}: unusable: none of its {n_bad:,} rows is valid (see {out})")
    print(f"{path}: {len(result.valid):,} rows valid, {n_bad:,} quarantined -> {out}")
    return EXIT_QUARANTINED


def screen_ratings(ratings: pd.DataFrame, rules: RowRules | None = None) -> Validation:
    """Row rules on already-parsed ratings (e.g. `recsys fetch`): valid rows and quarantine.

    The quarantine holds the rejected rows' fields, `row` (1-based position in the parsed
    ratings) and `reason`.
    """
    rules = rules or default_rules()
    frame = ratings[RATINGS_COLUMNS].astype("float64").reset_index(drop=True)
    reasons = row_reasons(frame, rules)
    bad = reasons != ""
    quarantine = ratings[bad].reset_index(drop=True)
    quarantine.insert(0, "reason", reasons[bad])
    quarantine.insert(0, "row", np.flatnonzero(bad) + 1)
    valid = ratings[~bad].reset_index(drop=True)
    return Validation(path=Path("<parsed>"), valid=valid, quarantine=quarantine)
