"""The tasks every flow shares: read DVC's stage state, `dvc repro` one stage, publish tables.

Retries: a task that can fail transiently (DVC's repository lock held by another run, I/O)
retries with back-off; a deterministic failure (a quality gate, a stage's own error) does not.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from recsys.errors import RecsysError
from recsys.pipeline import StageState, run_dvc, stage_states

# Seconds before retry 1, 2, 3: back-off for a lock another `dvc repro` holds, or flaky I/O.
RETRY_DELAYS_S = [2, 5, 15]
# Makes the next attempt of a DVC task raise a transient error once: names a file whose
# existence arms the failure (the attempt deletes it). For drills and tests of the retries.
FAIL_ONCE_ENV = "RECSYS_FLOWS_FAIL_ONCE"
TRANSIENT_MARKERS = ("Unable to acquire lock", "lock is held", "Resource temporarily unavailable")


class TransientError(RecsysError):
    """A failure a later attempt can get past: a DVC lock held elsewhere, an I/O hiccup."""


class QualityGateFailed(RecsysError):
    """A day's batch is below the quality threshold; retrying gives the same answer."""


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry transient errors and I/O errors only."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError | OSError)


def log_event(event: str, **fields) -> None:
    """One structured (JSON) log line in the run's log."""
    get_run_logger().info(json.dumps({"event": event, **fields}, sort_keys=True))


def _fail_once_if_armed() -> None:
    """Raise a TransientError if the file named by RECSYS_FLOWS_FAIL_ONCE exists (and remove it)."""
    armed = os.environ.get(FAIL_ONCE_ENV)
    if armed and Path(armed).exists():
        Path(armed).unlink()
        raise TransientError(f"injected transient failure ({FAIL_ONCE_ENV}={armed})")


def classified(err: RecsysError) -> RecsysError:
    """The same error, as a TransientError when DVC's message says a lock was busy."""
    if any(marker in str(err) for marker in TRANSIENT_MARKERS):
        return TransientError(str(err))
    return err


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_S, retry_condition_fn=retry_if_transient)
def read_stages(repo: str) -> list[StageState]:
    """Every stage of the repo's pipeline with DVC's built/stale state."""
    try:
        return stage_states(repo, wait_for_lock=True)
    except RecsysError as err:
        raise classified(err) from None


@task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_if_transient,
    task_run_name="dvc repro {stage}",
)
def repro(repo: str, stage: str) -> dict:
    """`dvc repro <stage>` (waits for DVC's lock); return whether it ran and how long it took."""
    _fail_once_if_armed()
    started = time.perf_counter()
    try:
        out = run_dvc("--wait-for-lock", "repro", stage, cwd=repo)
    except RecsysError as err:
        raise classified(err) from None
    result = {
        "stage": stage,
        "ran": "Running stage" in out,  # DVC prints it for every stage it (re)ran
        "duration_s": round(time.perf_counter() - started, 3),
    }
    log_event("stage_done", **result)
    return result


def stage_names(stages: list[StageState]) -> set[str]:
    """The names DVC addresses the stages by (`split`, `batch@3`, `train@ncf`, ...)."""
    return {stage.name for stage in stages}


def require_stages(wanted: list[str], stages: list[StageState]) -> None:
    """Raise naming the first wanted stage that dvc.yaml does not define."""
    missing = [name for name in wanted if name not in stage_names(stages)]
    if missing:
        raise RecsysError(f"dvc.yaml defines no stage {', '.join(missing)}")


def read_json(path: Path) -> dict | None:
    """A JSON document, or None when the file does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


def publish_table(key: str, rows: list[dict], description: str) -> None:
    """A Prefect table artifact (one dict per row)."""
    create_table_artifact(key=key, table=rows, description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A Prefect markdown artifact."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)


@task(retries=2, retry_delay_seconds=RETRY_DELAYS_S[:2], retry_condition_fn=retry_if_transient)
def metrics_markdown(repo: str, targets: list[str]) -> str:
    """`dvc metrics show --md` for the given metrics files that exist, plus their paths."""
    present = [t for t in targets if (Path(repo) / t).is_file()]
    if not present:
        return "_no metrics files yet_"
    try:
        table = run_dvc("metrics", "show", "--md", *present, cwd=repo)
    except RecsysError as err:
        raise classified(err) from None
    files = "\n".join(f"- `{Path(repo).resolve() / t}`" for t in present)
    return f"{table}\nFiles (tracked by DVC, `dvc metrics show {' '.join(present)}`):\n{files}\n"
