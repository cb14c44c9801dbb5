"""The tasks every flow shares: read DVC's stage state, `dvc repro` one stage, publish tables.

Guards every flow that runs DVC passes through first: `allowed_repo` (the `repo` parameter must
be one the flows were served for) and `writer` (the repository's one-writer lock, which
`recsys etl` takes too). Every task that runs DVC gets `timeout_seconds` from the repo's
params.yaml (`flows` section) through `limited`.

Retries: a task that can fail transiently (DVC's repository lock held by another run, I/O)
retries with back-off; a deterministic failure (a quality gate, a stage's own error) does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext, TaskRunContext

from recsys.config import FlowsParams, load_params
from recsys.errors import RecsysError
from recsys.pipeline import DvcFailed, StageState, repo_lock, run_dvc, stage_states

# Seconds before retry 1, 2, 3: back-off for a lock another `dvc repro` holds, or flaky I/O.
RETRY_DELAYS_S = [2, 5, 15]
# The repositories flows may run in (os.pathsep-separated), set by `python -m flows.serve --repo`
# and by each flow's command line; a flow run asking for any other path is refused.
ALLOWED_REPOS_ENV = "RECSYS_FLOW_REPOS"
TRANSIENT_MARKERS = (
    "Unable to acquire lock",
    "lock is held",
    "is busy",  # DVC's rwlock: another DVC process reads or writes the same paths
    "Resource temporarily unavailable",
)
STAGE_TASKS = "dvc-stage"  # tag of tasks that run stages: flows.stage_timeout_s, else read_
# DVC is stopped at the limit by run_dvc itself, which says so; the task's own timeout_seconds
# is this much later, a backstop for what runs in-process (and for DVC's SIGTERM grace).
BACKSTOP_S = 30


class TransientError(RecsysError):
    """A failure a later attempt can get past: a DVC lock held elsewhere, an I/O hiccup."""


class QualityGateFailed(RecsysError):
    """A day's batch is below the quality threshold; retrying gives the same answer."""


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry transient errors and I/O errors only (a timeout is an
    OSError, but a step that ran past its limit would only run past it again)."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError | OSError) and not isinstance(error, TimeoutError)


def log_event(event: str, **fields) -> None:
    """One structured (JSON) log line in the run's log."""
    get_run_logger().info(json.dumps({"event": event, **fields}, sort_keys=True))


def allow_repos(*repos: str | Path) -> None:
    """Let flows in this process (and the flow runs it starts) run in exactly these repos."""
    os.environ[ALLOWED_REPOS_ENV] = os.pathsep.join(str(Path(r).resolve()) for r in repos)


def allowed_repo(repo: str) -> str:
    """`repo` resolved, if it is one the flows were served for; else raise saying which are."""
    allowed = [p for p in os.environ.get(ALLOWED_REPOS_ENV, "").split(os.pathsep) if p]
    resolved = str(Path(repo).resolve())
    if resolved not in allowed:
        served = ", ".join(allowed) or "none"
        raise RecsysError(
            f"repo {repo!r} is not a repository these flows were served for (allowed: {served});"
            " serve it with `python -m flows.serve --repo PATH`"
        )
    return resolved


def limits(repo: str) -> FlowsParams:
    """The repo's time limits: params.yaml's `flows` section."""
    return load_params(Path(repo) / "params.yaml").flows


def limited(dvc_task: Task, repo: str) -> Task:
    """`dvc_task` with its time limit from the repo's params.yaml: `flows.stage_timeout_s` for
    tasks tagged STAGE_TASKS (they run stages), `flows.read_timeout_s` for the others.

    The task's timeout_seconds is the limit + BACKSTOP_S; `dvc_limit()` gives the limit itself.
    """
    limit = limits(repo)
    seconds = limit.stage_timeout_s if STAGE_TASKS in dvc_task.tags else limit.read_timeout_s
    return dvc_task.with_options(timeout_seconds=seconds + BACKSTOP_S)


def dvc_limit() -> float | None:
    """Seconds the running task gives a DVC command before stopping it (None: no limit)."""
    context = TaskRunContext.get()
    seconds = context.task.timeout_seconds if context else None
    return seconds - BACKSTOP_S if seconds else None


@contextlib.contextmanager
def writer(repo: str) -> Iterator[None]:
    """Hold the repository's one-writer lock for this flow run (every flow that runs DVC does):
    wait up to `flows.lock_timeout_s` for the holder, logging who it is, then fail naming it."""
    context = FlowRunContext.get()
    holder = f"flow run {context.flow.name}/{context.flow_run.name}" if context else "a flow"
    with repo_lock(repo, holder, timeout_s=limits(repo).lock_timeout_s,
                   on_wait=get_run_logger().warning):  # fmt: skip
        yield


def classified(err: RecsysError, echoed: bool = False) -> RecsysError:
    """The same error, as a TransientError when DVC's output says a lock was busy.

    DVC's whole output goes into the run's log first (unless `echoed` already streamed it):
    the error's message holds only DVC's reason.
    """
    output = err.output if isinstance(err, DvcFailed) else str(err)
    if isinstance(err, DvcFailed) and not echoed:
        get_run_logger().error("%s\nDVC's output:\n%s", err, output.rstrip())
    if any(marker in output for marker in TRANSIENT_MARKERS):
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
    tags=[STAGE_TASKS],
)
def repro(repo: str, stage: str) -> dict:
    """`dvc repro <stage>` (waits for DVC's lock), its output streamed into the run's log;
    return whether it ran and how long it took."""
    started = time.perf_counter()
    logger = get_run_logger()
    try:
        out = run_dvc(
            "--wait-for-lock", "repro", stage, cwd=repo, echo=logger.info, timeout_s=dvc_limit()
        )
    except RecsysError as err:
        raise classified(err, echoed=True) from None
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
        table = run_dvc("metrics", "show", "--md", *present, cwd=repo, timeout_s=dvc_limit())
    except RecsysError as err:
        raise classified(err) from None
    files = "\n".join(f"- `{Path(repo).resolve() / t}`" for t in present)
    return f"{table}\nFiles (tracked by DVC, `dvc metrics show {' '.join(present)}`):\n{files}\n"
