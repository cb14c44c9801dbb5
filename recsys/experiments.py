"""DVC experiment sweeps: a grid file, `dvc exp run --queue -S`, `--run-all`, a comparison.

A grid file (configs/grids/*.yaml) names params.yaml keys and the values to try:

    params:
      ss4rec.d_state: [16, 32]
      ss4rec.n_layers: [1, 2]
    seeds: [0, 1]              # optional: shorthand for a train.seed axis
    targets: [evaluate@ss4rec] # optional: default every stage
    jobs: 1                    # optional: experiments run at once

Each axis becomes one `-S key=v1,v2` argument; DVC's grid syntax (Hydra's sweep grammar)
queues the cross product. `dvc exp run --run-all` runs the queue; the comparison table comes
from `dvc.api.exp_show`. Every DVC command goes through `recsys.pipeline.run_dvc`.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.config import PARAMS_FILE, Params, parse_params, read_yaml
from recsys.errors import RecsysError
from recsys.pipeline import run_dvc

SEED_KEY = "train.seed"
QUEUED = re.compile(r"Queued experiment '([^']+)'")
PROGRESS = re.compile(r"^(Reproducing experiment '|Failed to reproduce experiment)")
FIXED_COLUMNS = ["Experiment", "rev", "State"]
# test RMSE and NDCG@10 of each model: `test.rmse`, or `metrics/scores/<model>.json:test.rmse`
# when several files share the key (dvc.api.exp_show prefixes such keys with their file)
HEADLINE = re.compile(r"^(?:metrics/scores/(?P<model>[^/:]+)\.json:)?test\.(?:rmse|ndcg@10)$")
PLAIN_STRING = re.compile(r"[\w./@:+-]+")  # needs no quotes in a Hydra override
MISSING = "!"  # exp_show's cell for "no value at this revision"


class GridFile(BaseModel):
    """A sweep: params.yaml keys with the values to try, optional seeds, targets, jobs."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | None = Field(default=None, min_length=1)
    targets: list[str] = Field(default_factory=list)
    jobs: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _something_to_sweep(self) -> GridFile:
        empty = [key for key, values in self.params.items() if not values]
        if empty:
            raise ValueError(f"params.{empty[0]}: needs at least one value")
        if self.seeds and SEED_KEY in self.params:
            raise ValueError(f"give {SEED_KEY} under params or as seeds, not both")
        if not self.axes():
            raise ValueError("nothing to sweep: give params (key: [values]) or seeds")
        return self

    def axes(self) -> dict[str, list]:
        """Every swept key with its values; seeds become the train.seed axis."""
        return {**self.params, **({SEED_KEY: list(self.seeds)} if self.seeds else {})}

    def size(self) -> int:
        """How many experiments the cross product holds."""
        return math.prod(len(values) for values in self.axes().values())


def _grid_error(err: ValidationError, source: Path) -> RecsysError:
    """A grid file's first validation problem as one line naming the file and the field."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field (a grid file has params, seeds, targets, jobs)"
    return RecsysError(f"{source}: {where + ': ' if where else ''}{msg}")


def _section(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a params section, or None for a plain value."""
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def check_key(key: str, source: Path) -> None:
    """Raise unless `key` is a dotted params.yaml key naming one value (not a section)."""
    model: type[BaseModel] | None = Params
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields if model else {}
        if part not in fields:
            parent = ".".join(parts[:depth]) or "params.yaml"
            known = f" ({parent} has: {', '.join(fields)})" if fields else ""
            raise RecsysError(f"{source}: params.{key}: not a params.yaml key{known}")
        model = _section(fields[part].annotation)
    if model is not None:
        raise RecsysError(f"{source}: params.{key}: a whole section; sweep one of its keys")


def check_values(key: str, values: list, base: dict, source: Path) -> None:
    """Raise unless params.yaml stays valid with each value of `key` in turn."""
    *sections, leaf = key.split(".")
    for value in values:
        trial = copy.deepcopy(base)
        node = trial
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
        parse_params(trial, source=f"{source} ({key}={value!r})")


def load_grid(path: str | Path, params_path: str | Path = PARAMS_FILE) -> GridFile:
    """Read and validate a grid file against params.yaml; problems are one line."""
    path, params_path = Path(path), Path(params_path)
    try:
        grid = GridFile.model_validate(read_yaml(path))
    except ValidationError as err:
        raise _grid_error(err, path) from None
    base = read_yaml(params_path) if params_path.is_file() else {}
    for key, values in grid.axes().items():
        check_key(key, path)
        check_values(key, values, base, path)
    return grid


def override_value(value: Any) -> str:
    """One value in Hydra's override grammar (what `dvc exp run -S` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, str) and not PLAIN_STRING.fullmatch(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def set_params_args(grid: dict[str, list]) -> list[str]:
    """`-S key=v1,v2` arguments for DVC's grid syntax, one per parameter."""
    if not grid or any(not values for values in grid.values()):
        raise RecsysError("the grid needs at least one parameter with at least one value")
    return [
        arg
        for key, values in grid.items()
        for arg in ("-S", f"{key}={','.join(override_value(v) for v in values)}")
    ]


def queue_grid(repo: str | Path, grid: dict[str, list], targets: list[str]) -> list[str]:
    """`dvc exp run --queue -S ...`: queue the grid's cross product; return the names."""
    out = run_dvc("exp", "run", "--queue", *set_params_args(grid), *targets, cwd=repo)
    return QUEUED.findall(out)


def run_queue(
    repo: str | Path, jobs: int = 1, echo: Callable[[str], None] | None = None
) -> list[str]:
    """`dvc exp run --run-all`: run every queued experiment; return DVC's progress lines.

    `echo` gets every line DVC prints while the queue runs (the stages' own output too).
    """
    out = run_dvc("exp", "run", "--run-all", "--jobs", str(jobs), cwd=repo, echo=echo)
    return [line for line in out.splitlines() if PROGRESS.match(line)]


def _cell(value: Any) -> Any:
    """An exp_show cell, with its "no value here" marker as None."""
    return None if value == MISSING else value


def varying_columns(rows: list[dict], grid: dict[str, list]) -> list[str]:
    """Columns (not the grid's, not dependency hashes) whose value differs between rows."""
    return [
        key
        for key in (rows[0] if rows else {})
        if key not in FIXED_COLUMNS and key not in grid and key != "Created"
        and len({repr(row.get(key)) for row in rows}) > 1
        and not any(isinstance(row.get(key), str) and "/" in key for row in rows)  # dep hashes
    ]  # fmt: skip


def headline_columns(rows: list[dict]) -> list[str]:
    """Each model's test RMSE and NDCG@10 columns (metrics/scores/<model>.json)."""
    return [key for key in (rows[0] if rows else {}) if HEADLINE.match(key)]


def comparison_rows(
    shown: list[dict], names: list[str], grid: dict[str, list], headline: bool = False
) -> list[dict]:
    """The named experiments with their grid params and the varying (or headline) metrics."""
    rows = [row for row in shown if row.get("Experiment") in names]
    extra = headline_columns(rows) if headline else varying_columns(rows, grid)
    columns = FIXED_COLUMNS + list(grid) + extra
    return [{col: _cell(row.get(col)) for col in columns} for row in rows]


def show_experiments(
    repo: str | Path, names: list[str], grid: dict[str, list], headline: bool = False
) -> list[dict]:
    """`comparison_rows` of what `dvc.api.exp_show` reports for the repo now."""
    import dvc.api

    return comparison_rows(dvc.api.exp_show(repo=str(repo)), names, grid, headline)


def unsuccessful(rows: list[dict], names: list[str]) -> list[str]:
    """Named experiments that did not succeed (failed, still queued, or not shown at all)."""
    failed = [row["Experiment"] for row in rows if row["State"] != "Success"]
    return failed + sorted(set(names) - {row["Experiment"] for row in rows})


def _label(column: str) -> str:
    """A short column header: `metrics/scores/ss4rec.json:test.rmse` -> `ss4rec test.rmse`."""
    match = HEADLINE.match(column)
    if match and match["model"]:
        return f"{match['model']} {column.rsplit(':', 1)[1]}"
    return column


def _text(value: Any, metric: bool) -> str:
    """A table cell: metrics to 4 decimals, whole-number params without `.0`, None as -."""
    if value is None:
        return "-"
    if isinstance(value, float) and metric:
        return f"{value:.4f}"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def render_table(rows: list[dict]) -> str:
    """Rows as an aligned text table, State last."""
    if not rows:
        return "(no experiments)"
    columns = [c for c in rows[0] if c != "State"] + ["State"]
    cells = [[_text(row[c], bool(HEADLINE.match(c))) for c in columns] for row in rows]
    table = [[_label(c) for c in columns], *cells]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ("  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)) for line in table)
    return "\n".join(line.rstrip() for line in lines)


def _stderr(line: str) -> None:
    """Print a progress line on stderr (stdout keeps the table or JSON)."""
    print(line, file=sys.stderr)


def run_grid(
    path: str | Path,
    repo: str | Path = ".",
    jobs: int | None = None,
    queue_only: bool = False,
    progress: Callable[[str], None] = _stderr,
) -> tuple[list[str], list[dict]]:
    """Validate, queue and (unless `queue_only`) run a grid file; return names and rows."""
    grid = load_grid(path, Path(repo) / PARAMS_FILE)
    axes = grid.axes()
    names = queue_grid(repo, axes, grid.targets)
    progress(f"queued {len(names)} experiment(s) over {' x '.join(axes)}: {', '.join(names)}")
    if queue_only:
        return names, []
    run_queue(repo, jobs or grid.jobs, echo=progress)  # DVC's output, live
    return names, show_experiments(repo, names, axes, headline=True)


def grid_command(
    path: str | Path, jobs: int | None = None, queue_only: bool = False, as_json: bool = False
) -> int:
    """`recsys experiments grid`: run the sweep, print its table; a failure is an error."""
    names, rows = run_grid(path, jobs=jobs, queue_only=queue_only)
    if queue_only:
        print(json.dumps({"queued": names}) if as_json else "\n".join(names))
        _stderr("run them with `dvc exp run --run-all` (or `dvc queue start`)")
        return 0
    print(json.dumps(rows, indent=2) if as_json else render_table(rows))
    failed = unsuccessful(rows, names)
    if failed:
        raise RecsysError(
            f"{len(failed)} of {len(names)} experiment(s) failed: {', '.join(failed)} "
            "(`dvc queue logs NAME` shows why)"
        )
    return 0
