"""`recsys bench train`: training throughput (target events per second) per model."""

from __future__ import annotations

import time

import numpy as np
import torch

from recsys.config import Params
from recsys.training.tensors import SplitData
from recsys.training.train import Trainer, model_config


def bench_train(data: SplitData, models: list[str], params: Params, epochs: int) -> dict:
    """Training throughput: target events per second over `epochs` timed epochs per model."""
    results = {}
    for name in models:
        trainer = Trainer(name, model_config(name, params), data, params.train)
        epoch_seconds, samples = [], 0.0
        for epoch in range(1, epochs + 1):
            _synchronize(trainer.device)
            started = time.perf_counter()
            samples = trainer.loop.run_epoch(epoch, None)["train/samples"]
            _synchronize(trainer.device)
            epoch_seconds.append(time.perf_counter() - started)
        epoch_s = float(np.median(epoch_seconds))
        results[name] = {
            "samples_per_s": samples / epoch_s,
            "epoch_s": epoch_s,
            "L": int(trainer.train_set.tensors["hist_item"].shape[1]),
            "batch_size": trainer.loop.hyper.batch_size,
            "samples_per_epoch": int(samples),
            "device": str(trainer.device),
        }
    return results


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
