"""The README's results tables, regenerated from the metrics files (`recsys report`).

A block is the text between `<!-- recsys report SOURCE -->` and `<!-- end report -->`:
SOURCE `models` renders metrics/eval/*.json (the evaluate@ stages, one test read per model),
a path to a JSON file renders a `recsys study --out` result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from recsys.errors import RecsysError
from recsys.io import write_text
from recsys.training.study import render as render_study

BLOCK = re.compile(r"(<!-- recsys report (\S+) -->\n)(.*?)(<!-- end report -->)", re.DOTALL)
EVAL_DIR = Path("metrics/eval")


def _row(name: str, parts: dict) -> str:
    val, test = parts["val"], parts["test"]
    warm, cold = test.get("warm", {}), test.get("cold", {})

    def cell(part: dict, key: str, digits: int = 4) -> str:
        return f"{part[key]:.{digits}f}" if key in part else ""

    return (
        f"| {name} | {cell(val, 'ndcg@10')} | {cell(test, 'rmse', 3)} | {cell(test, 'hr@10')} "
        f"| {cell(test, 'ndcg@10')} | {cell(test, 'mrr@10')} | {cell(warm, 'ndcg@10')} "
        f"| {cell(cold, 'ndcg@10')} |"
    )


def render_models(eval_dir: Path = EVAL_DIR) -> str:
    """One row per evaluated model, then the sanity baselines fitted in the same runs."""
    files = sorted(eval_dir.glob("*.json"))
    if not files:
        raise RecsysError(f"{eval_dir}: no evaluation files; run `dvc repro` first")
    reports = {path.stem: json.loads(path.read_text()) for path in files}
    first = next(iter(reports.values()))
    counts = (
        first["test"].get("warm", {}).get("n_events"),
        first["test"].get("cold", {}).get("n_events"),
    )
    lines = [
        f"| model | val NDCG@10 | test RMSE | HR@10 | NDCG@10 | MRR@10 | warm NDCG@10 "
        f"({counts[0]:,}) | cold NDCG@10 ({counts[1]:,}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {"mean": "popularity (`mean`)", "bias": "user + item bias", "markov": "`markov`"}
    for name, parts in first.get("baselines", {}).items():
        lines.append(_row(labels.get(name, name), parts))
    lines += [_row(f"**{name}**", report) for name, report in reports.items()]
    return "\n".join(lines)


def render_source(source: str) -> str:
    """The table for one block's SOURCE."""
    if source == "models":
        return render_models()
    path = Path(source)
    if not path.is_file():
        raise RecsysError(f"{path}: no such study file; run `recsys study ... --out {path}`")
    return render_study(json.loads(path.read_text()))


def update_readme(readme: Path) -> list[str]:
    """Regenerate every report block of `readme` in place; the sources it rendered."""
    text = readme.read_text(encoding="utf-8")
    done: list[str] = []

    def fill(match: re.Match) -> str:
        done.append(match.group(2))
        return f"{match.group(1)}{render_source(match.group(2))}\n{match.group(4)}"

    new = BLOCK.sub(fill, text)
    if new != text:
        write_text(readme, new)
    return done
