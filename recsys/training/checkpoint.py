"""Checkpoints: weights + model name + config + DataSpec + data fingerprint, byte-stable.

`state_dict` holds the weights of the epoch with the best early-stop metric (they rank);
`rating_state_dict`, where present, those of the epoch with the lowest val/rmse (they predict
ratings: `load_rater`).

Saved through an in-memory buffer, so the archive's inner folder name never depends on the
temp file's name and identical tensors give identical bytes; loaded with weights_only=True.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from recsys.errors import RecsysError
from recsys.io import atomic_path
from recsys.models.base import DataSpec, Recommender
from recsys.models.registry import model_class

FORMAT = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` with torch.save, atomically and with stable bytes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dictionary with weights_only=True; a bad file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: no checkpoint; run `dvc repro train@<model>` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and why, in one line
        raise RecsysError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None


def model_payload(model: Recommender, config, data: DataSpec, fingerprint: str) -> dict:
    """The header every checkpoint carries: how to rebuild the model and on what data."""
    return {
        "format": FORMAT,
        "model": model.name,
        "config": config.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "data_fingerprint": fingerprint,
    }


def build_model(ckpt: dict[str, Any], weights: str = "state_dict") -> Recommender:
    """Rebuild the model a checkpoint describes and load its weights (on CPU, eval mode)."""
    cls = model_class(ckpt["model"])
    model = cls(cls.Config(**ckpt["config"]), DataSpec(**ckpt["data"]))
    model.load_state_dict(ckpt[weights])
    return model.eval()


def load_rater(ckpt: dict[str, Any]) -> Recommender | None:
    """The model that predicts ratings: the lowest-val/rmse epoch's weights, or None where
    they are the ranking weights (the same epoch)."""
    return build_model(ckpt, "rating_state_dict") if "rating_state_dict" in ckpt else None


def load_model(path: str | Path) -> tuple[Recommender, dict[str, Any]]:
    """The model stored at `path` and its checkpoint dictionary."""
    ckpt = read_checkpoint(path)
    missing = {"model", "config", "data", "state_dict"} - set(ckpt)
    if missing:
        raise RecsysError(f"{path}: checkpoint lacks {', '.join(sorted(missing))}")
    return build_model(ckpt), ckpt
