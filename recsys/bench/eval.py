"""`recsys bench eval`: queries/s of the fast scorer against the per-query reference path.

Both score the same queries (every val and test event of the split, as `evaluate@` does) with
the same model, in one run: the checkpoint in `models/<model>.pt` when there is one, else the
model freshly built from params.yaml (speed does not depend on the weights). A checkpoint whose
ratings come from another epoch (`rating_state_dict`) is scored as `evaluate@` scores it, with
both weight sets: then the fast path encodes each context twice (`"rater": true`), unless
`ranking_only` (the ranking weights alone, as validation during training scores). The reference
is the path as it was before the fast one: each query encoded on its own, twice (rating and
ranking), its scans storing every state, glibc's default allocator; the fast path encodes
each distinct context once, without stored states, with `keep_freed_memory` as `evaluate`
runs. `max_abs_diff` is the largest difference of their predicted ratings,
`rank_mismatches` the queries whose rank differs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from recsys.config import Params
from recsys.models.registry import model_class
from recsys.models.ssm import SelectiveSSM
from recsys.training.checkpoint import load_model, load_rater
from recsys.training.runtime import keep_freed_memory, resolve_device, seed_everything
from recsys.training.scoring import history_len, score_queries, score_queries_reference
from recsys.training.tensors import EventLog, QuerySet, SplitData
from recsys.training.train import model_config


def eval_model(name: str, data: SplitData, params: Params, checkpoints: Path | None):
    """The model to score with, its config, where it came from, and its rater (or None): its
    checkpoint if present, else built from params.yaml."""
    path = None if checkpoints is None else checkpoints / f"{name}.pt"
    if path is not None and path.is_file():
        model, ckpt = load_model(path)
        config = model_class(ckpt["model"]).Config(**ckpt["config"])
        return model, config, str(path), load_rater(ckpt)
    config = model_config(name, params)
    return model_class(name)(config, data.spec), config, "initialised from params.yaml", None


def keep_states(model: torch.nn.Module, keep: bool | None) -> None:
    """Make every selective scan of `model` store its states (True) or decide itself (None)."""
    for module in model.modules():
        if isinstance(module, SelectiveSSM):
            module.keep_states = keep


def bench_eval(
    data: SplitData,
    models: list[str],
    params: Params,
    checkpoints: Path | None,
    repeats: int,
    ranking_only: bool = False,
) -> dict:
    """Per model: fast and reference queries/s (median of `repeats`), and their agreement.

    Every reference runs first, with glibc's default allocator as the path had before; then
    `keep_freed_memory` (which `evaluate` and training call), then every fast path: so each
    side is timed as it runs in its own pipeline, and the ratio is the speed-up users get.
    """
    seed_everything(params.train)
    device = resolve_device(params.train.device)
    log, results = EventLog(data), {}
    rows = np.r_[log.rows_of("val"), log.rows_of("test")]
    setups = {}
    for name in models:
        model, config, source, rater = eval_model(name, data, params, checkpoints)
        rater = None if ranking_only else rater
        for part in (model, rater):
            if part is not None:
                part.to(device)
        setups[name] = (
            (model, rater),
            QuerySet(log, rows, history_len(model, config, params.train)),
            source,
        )
    reference = {}
    for name, (models, queries, _) in setups.items():
        present = [part for part in models if part is not None]
        for part in present:
            keep_states(part, True)  # the reference scans as before the fast path
        reference[name] = _timed(score_queries_reference, models, queries, params, device, repeats)
        for part in present:
            keep_states(part, None)
    keep_freed_memory()
    for name, (models, queries, source) in setups.items():
        fast_s, fast = _timed(score_queries, models, queries, params, device, repeats)
        ref_s, ref = reference[name]
        results[name] = {
            "fast_queries_per_s": len(queries) / fast_s,
            "reference_queries_per_s": len(queries) / ref_s,
            "speedup": ref_s / fast_s,
            "max_abs_diff": float(np.max(np.abs(fast.pred_rating - ref.pred_rating), initial=0)),
            "rank_mismatches": int(np.sum(fast.rank != ref.rank)),
            "n_queries": len(queries),
            "n_contexts": len(queries.contexts(models[0].context)[0]),
            "threads": torch.get_num_threads(),
            "model": source,
            "rater": models[1] is not None,
        }
    return results


def _timed(scorer, models, queries: QuerySet, params: Params, device, repeats: int):
    """The median seconds of `repeats` scorings (models: the ranker and its rater or None)
    and the last scoring."""
    seconds = []
    model, rater = models
    for _ in range(repeats):
        started = time.perf_counter()
        scored = scorer(model, queries, params.train.eval_batch_size, device, rater=rater)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), scored
