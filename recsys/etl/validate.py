"""Ingest validation at the data boundary: a raw ratings CSV checked line by line.

The file must be UTF-8 text with the header `user_id,item_id,rating,timestamp`. A file that
cannot be read as that at all (empty, not text, UTF-16, no valid header, wrong delimiter, no
data rows) is unusable. Otherwise every data line is checked by the same row rules as the daily
batches (recsys.etl.quality) plus the line-level ones (field count, truncated last line); valid
rows are kept, invalid ones go to a quarantine CSV (`line,reason,raw`) with their reason.

Bad input loses nothing and alters nothing: ids and timestamps are parsed as exact integers
(never through float64); the quarantine keeps each rejected line's full text, while messages
echo at most ECHO_LIMIT characters of it; the quarantine path may never be the input or a file
that is not an earlier quarantine (first line `line,reason,raw`); CR, LF and CRLF line ends are
all read; every OS error is one line naming the file and what to do.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
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
QUARANTINE_HEADER = "line,reason,raw"  # the first line of every quarantine file we write
BOM = "\ufeff"
WIDE_BOMS = {  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    b"\xff\xfe\x00\x00": "UTF-32 (little-endian, with a byte-order mark)",
    b"\x00\x00\xfe\xff": "UTF-32 (big-endian, with a byte-order mark)",
    b"\xff\xfe": "UTF-16 (little-endian, with a byte-order mark)",
    b"\xfe\xff": "UTF-16 (big-endian, with a byte-order mark)",
}
OTHER_DELIMITERS = {"\t": "tab", ";": "';'", "|": "'|'", " ": "space"}
INTEGER_PLACEHOLDER = {"user_id": 0, "item_id": 0, "timestamp": -1}  # where the text is no int64
INT64_MAX = str(np.iinfo(np.int64).max)
PARSER_REASONS = ("missing_field", "not_a_number", "bad_id", "bad_timestamp")  # found parsing
ECHO_LIMIT = 200  # characters of input text a message repeats
BLOCK_LINES = 200_000  # lines parsed at a time: Python strings only for one block
EXIT_VALID, EXIT_UNUSABLE, EXIT_USAGE, EXIT_QUARANTINED = 0, 1, 2, 3
QUARANTINE_HINT = "pass --quarantine a new file path (default: FILE.quarantine.csv beside FILE)"
FILE_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}

REASON_TEXT = {
    "malformed": "expected 4 comma-separated fields",
    "truncated": "truncated: the last line has no newline",
    "missing_field": "a required field is empty",
    "not_a_number": "a field is not a number (or is NaN)",
    "bad_id": f"user_id / item_id must be positive integers (digits only, at most {INT64_MAX})",
    "rating_out_of_scale": "rating outside the release's scale",
    "bad_timestamp": "timestamp must be whole, non-negative epoch seconds (digits only)",
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
    notes: list[str] = field(default_factory=list)  # fixed on the way (BOM, CRLF, CR)


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`repr(text)`, cut to `limit` characters plus how many more there were."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}…({len(text) - limit:,} more characters)"


def os_reason(err: OSError) -> str:
    """The short reason of an OS error ("Permission denied", "No space left on device")."""
    return err.strerror or str(err) or type(err).__name__


def folder_problem(path: Path) -> str | None:
    """Why no file can be created at `path` (a parent is a file, a read-only folder), or None."""
    folder = next((p for p in path.parents if p.exists()), Path("."))
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    return None


def input_mode(path: Path) -> int:
    """`st_mode` of the input; a missing or unreachable path is one line."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; check the path") from None
    except NotADirectoryError:
        blocked = folder_problem(path) or "a parent is not a folder"
        raise UsageError(f"{path}: no such file ({blocked}); check the path") from None
    except OSError as err:
        raise RecsysError(f"{path}: cannot read ({os_reason(err)}); check the path") from None


def check_input(path: Path) -> None:
    """Raise a usage error unless `path` is a regular file (not a folder, FIFO, device)."""
    mode = input_mode(path)
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: is a directory; pass the ratings CSV file itself")
    if not stat.S_ISREG(mode):
        kind = FILE_KINDS.get(stat.S_IFMT(mode), "a special file")
        raise UsageError(
            f"{path}: is not a regular file but {kind}; save the data to a file and pass that"
        )


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file; an OS error is one line naming the file."""
    check_input(path)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except PermissionError:
        raise RecsysError(
            f"{path}: cannot read (permission denied); make it readable (chmod u+r) "
            "or copy it somewhere readable"
        ) from None
    except OSError as err:
        raise RecsysError(f"{path}: cannot read ({os_reason(err)}); check the file") from None


def location(data: bytes, index: int) -> tuple[int, int]:
    """1-based (line, column in characters) of byte `index`; CR-only files count CRs."""
    newline = b"\n" if b"\n" in data else b"\r"
    start = data.rfind(newline, 0, index) + 1
    prefix = data[start:index].decode("utf-8", errors="replace").removeprefix(BOM)
    return data.count(newline, 0, index) + 1, len(prefix) + 1


def wide_encoding(data: bytes) -> str | None:
    """The UTF-16/32 variant the bytes look like (a BOM, or every other byte NUL), else None."""
    for bom, name in WIDE_BOMS.items():
        if data.startswith(bom):
            return name
    sample = data[:4096]
    even, odd = sample[0::2], sample[1::2]
    if len(odd) < 2:
        return None
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "UTF-16 (little-endian, without a byte-order mark)"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "UTF-16 (big-endian, without a byte-order mark)"
    return None


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text; empty, binary or other-encoding files are unusable, named by line."""
    if not data.strip():
        raise RecsysError(f"{path}: unusable: the file is empty")
    wide = wide_encoding(data)
    if wide:
        raise RecsysError(f"{path}: unusable: not UTF-8 text: looks like {wide}; save it as UTF-8")
    if b"\x00" in data:
        line, column = location(data, data.index(b"\x00"))
        raise RecsysError(f"{path}:{line}: unusable: not a text file (NUL byte at column {column})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line, column = location(data, err.start)
        raise RecsysError(
            f"{path}:{line}: unusable: not UTF-8 text (byte 0x{data[err.start]:02X} at column "
            f"{column}); save it as UTF-8 (it may be Latin-1 or Windows-1252)"
        ) from None


def normalise_newlines(text: str) -> tuple[str, str]:
    """Text with LF line ends, and what it had instead ('' when it was LF already)."""
    if "\r\n" in text:
        return text.replace("\r\n", "\n"), "Windows line endings (CRLF)"
    if "\r" in text and "\n" not in text:
        return text.replace("\r", "\n"), "classic Mac line endings (CR only)"
    return text, ""


def read_text(path: Path) -> tuple[str, list[str]]:
    """The file as text with a BOM removed and LF line ends; empty or binary files are unusable."""
    text = decode(path, read_bytes(path))
    notes = []
    if text.startswith(BOM):
        text = text[1:]
        notes.append(f"{path}:1: UTF-8 byte-order mark removed")
    text, endings = normalise_newlines(text)
    if endings:
        notes.append(f"{path}: {endings} read as LF")
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
    extra = [clip(f, 40) for f in fields if f not in RATINGS_COLUMNS]
    parts = [
        f"missing {missing}" if missing else "",
        f"extra [{', '.join(extra)}]" if extra else "",
    ]
    what = "; ".join(part for part in parts if part) or "columns out of order"
    raise RecsysError(f"{path}:1: unusable: header {clip(header)}: {what} (expected {HEADER!r})")


def split_fields(lines: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """(n, 4) raw string fields, and which lines do not have exactly 4 fields."""
    malformed = (lines.str.count(",") != 3).to_numpy()
    fields = lines.where(~malformed, ",,,").str.split(",", expand=True, n=3)
    fields.columns = RATINGS_COLUMNS
    return fields.apply(lambda col: col.str.strip()), malformed


def parse_integers(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 values of decimal integer text (never via float), and which ones fit.

    Only ASCII digits with an optional leading '+' count: '', '-1', '1.5', '1e3' and values
    above INT64_MAX do not fit (their value is 0 there).
    """
    unsigned = text.str.removeprefix("+")
    digits = unsigned.str.lstrip("0")
    digits = digits.where((digits != "") | (unsigned == ""), "0")  # all zeros: 0; '+': none
    fits = digits.str.fullmatch("[0-9]{1,19}") & ((digits.str.len() < 19) | (digits <= INT64_MAX))
    fits = fits.to_numpy(dtype=bool)
    return digits.where(fits, "0").astype("int64").to_numpy(), fits


def not_numbers(text: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Which of the `rows` hold text that is no number at all (a float parse, only to tell)."""
    out = np.zeros(len(text), dtype=bool)
    if rows.any():
        out[rows] = pd.to_numeric(text[rows], errors="coerce").isna().to_numpy()
    return out


def parse_numbers(fields: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Exact values (int64 ids and timestamp, float64 rating) and per-line parse masks."""
    empty = (fields == "").to_numpy().any(axis=1)
    rating = pd.to_numeric(fields["rating"], errors="coerce")
    columns = {"rating": rating.to_numpy(dtype="float64", na_value=np.nan)}
    no_number = np.isnan(columns["rating"])
    misfit = {}
    for name, placeholder in INTEGER_PLACEHOLDER.items():
        values, fits = parse_integers(fields[name])
        columns[name] = np.where(fits, values, placeholder)
        misfit[name] = ~fits
        no_number |= not_numbers(fields[name], ~fits)
    masks = {
        "missing_field": empty,
        "not_a_number": no_number & ~empty,
        "bad_id": misfit["user_id"] | misfit["item_id"],
        "bad_timestamp": misfit["timestamp"],
    }
    return pd.DataFrame(columns)[RATINGS_COLUMNS], masks


def parse_block(lines: list[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Exact values (placeholders where unusable) and parse masks, malformed lines apart."""
    series = pd.Series(lines, dtype="str").str.removesuffix("\n")
    fields, malformed = split_fields(series)
    numbers, masks = parse_numbers(fields)
    return numbers, {"malformed": malformed, **{k: m & ~malformed for k, m in masks.items()}}


def parse_lines(stream: io.StringIO) -> tuple[pd.DataFrame, dict[str, np.ndarray], bool]:
    """Parse the data lines in blocks (bounded memory); True when the last ends in a newline."""
    numbers, masks, last = [], [], "\n"
    while block := list(itertools.islice(stream, BLOCK_LINES)):
        block_numbers, block_masks = parse_block(block)
        numbers.append(block_numbers)
        masks.append(block_masks)
        last = block[-1]
    if not numbers:
        return pd.DataFrame(columns=RATINGS_COLUMNS).astype(RATINGS_DTYPES), {}, True
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
    """Check the header (line 1) and every data line of `text` (LF line ends)."""
    stream = io.StringIO(text)
    check_header(path, stream.readline().removesuffix("\n").strip())
    numbers, masks, complete = parse_lines(stream)
    if numbers.empty:
        raise RecsysError(f"{path}: unusable: a header but no data rows")
    rules.flags = {k: masks[k] for k in PARSER_REASONS}
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
    """`file:line: reason: raw` (raw cut to ECHO_LIMIT) for the first `limit` lines, a count."""
    shown = result.quarantine.head(limit)
    lines = []
    for row in shown.itertuples():
        reason = REASON_TEXT.get(row.reason, row.reason)
        if row.reason == "malformed":
            reason += f", got {row.raw.count(',') + 1}"
        lines.append(f"{result.path}:{row.line}: {reason}: {clip(row.raw)}")
    if len(result.quarantine) > limit:
        lines.append(f"{result.path}: ... and {len(result.quarantine) - limit} more lines")
    return lines


def default_quarantine(path: Path) -> Path:
    """FILE.quarantine.csv beside FILE."""
    return path.with_name(path.name + ".quarantine.csv")


def written_by_us(path: Path, header: str) -> bool:
    """Whether the regular file `path` starts with the quarantine header line `header`."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(header) + 1) == (header + "\n").encode()
    except OSError as err:
        raise RecsysError(
            f"{path}: cannot read it to check it is a quarantine file ({os_reason(err)}); "
            "move it away or fix its permissions"
        ) from None


def check_quarantine_target(
    source: Path, out: Path, header: str = QUARANTINE_HEADER, hint: str = QUARANTINE_HINT
) -> None:
    """Refuse an `out` that is the input, not ours, or cannot be created; `hint`: what to do."""
    try:
        mode = os.stat(out).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None:
        refuse_existing(source, out, mode, header, hint)
    blocked = folder_problem(out)
    if blocked:
        raise RecsysError(f"{out}: cannot write the quarantine file ({blocked}); {hint}")


def refuse_existing(source: Path, out: Path, mode: int, header: str, hint: str) -> None:
    """Raise unless the existing `out` is a quarantine file we wrote, and not the input."""
    if os.path.samefile(source, out):
        raise UsageError(
            f"{out}: is the input file itself; the quarantine must go elsewhere: {hint}"
        )
    if stat.S_ISDIR(mode):
        raise UsageError(f"{out}: is a directory, not a quarantine file; {hint}")
    if not (stat.S_ISREG(mode) and written_by_us(out, header)):
        raise UsageError(
            f"{out}: exists and is not a quarantine file (its first line is not {header!r}), "
            f"so it is left alone; move it away or {hint}"
        )


def write_quarantine(result: Validation, out: Path, hint: str = QUARANTINE_HINT) -> None:
    """Write the quarantined lines as CSV atomically; an OS error is one line naming `out`."""
    try:
        with atomic_path(out) as tmp:
            result.quarantine.to_csv(tmp, index=False, lineterminator="\n")
    except OSError as err:
        why = folder_problem(out) or os_reason(err)
        raise RecsysError(f"{out}: cannot write the quarantine file ({why}); {hint}") from None


def remove_stale(out: Path, header: str = QUARANTINE_HEADER) -> bool:
    """Remove an earlier quarantine file at `out` (only one we wrote); True if there was one."""
    if not (out.is_file() and written_by_us(out, header)):
        return False
    try:
        out.unlink()
    except OSError as err:
        raise RecsysError(
            f"{out}: cannot remove the stale quarantine file ({os_reason(err)}); delete it by hand"
        ) from None
    return True


def validate_command(path: Path, quarantine: str | None, max_messages: int = 20) -> int:
    """`recsys validate`: print problems and a summary; the exit code says if it is usable."""
    out = Path(quarantine) if quarantine else default_quarantine(path)
    try:
        return report(path, out, max_messages)
    except OSError as err:  # a last resort: whatever else the OS refuses is one line too
        where = err.filename or path
        raise RecsysError(
            f"{where}: {os_reason(err)}; check the path, its permissions and the free space"
        ) from None


def report(path: Path, out: Path, max_messages: int) -> int:
    """Validate `path` (after checking it and `out`), print, write or remove the quarantine."""
    check_input(path)
    check_quarantine_target(path, out)
    result = validate_file(path)
    for line in result.notes + problem_lines(result, max_messages):
        print(line, file=sys.stderr)
    n_bad = len(result.quarantine)
    if n_bad == 0:
        stale = f"; removed the stale quarantine file {out}" if remove_stale(out) else ""
        print(f"{path}: all {len(result.valid):,} rows valid{stale}")
        return EXIT_VALID
    write_quarantine(result, out)
    if result.valid.empty:
        raise RecsysError(f"{path}: unusable: none of its {n_bad:,} rows is valid (see {out})")
    print(f"{path}: {len(result.valid):,} rows valid, {n_bad:,} quarantined -> {out}")
    return EXIT_QUARANTINED


def screen_ratings(ratings: pd.DataFrame, rules: RowRules | None = None) -> Validation:
    """Row rules on already-parsed ratings (e.g. `recsys fetch`): valid rows and quarantine.

    The quarantine holds the rejected rows' fields, `row` (1-based position in the parsed
    ratings) and `reason`. Integer columns stay integers (never float64), so distinct large
    ids or timestamps are never merged into false duplicates.
    """
    rules = rules or default_rules()
    frame = ratings[RATINGS_COLUMNS].reset_index(drop=True)
    frame = frame.astype({c: "float64" for c in frame if frame[c].dtype.kind not in "iu"})
    reasons = row_reasons(frame, rules)
    bad = reasons != ""
    quarantine = ratings[bad].reset_index(drop=True)
    quarantine.insert(0, "reason", reasons[bad])
    quarantine.insert(0, "row", np.flatnonzero(bad) + 1)
    valid = ratings[~bad].reset_index(drop=True)
    return Validation(path=Path("<parsed>"), valid=valid, quarantine=quarantine)
