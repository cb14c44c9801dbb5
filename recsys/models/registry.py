"""Models by name; imported lazily so the CLI starts without torch."""

from __future__ import annotations

from importlib import import_module

from recsys.errors import RecsysError
from recsys.models.base import Recommender

# name -> "module:Class"
MODELS = {
    "ncf": "recsys.models.ncf:NCF",
    "ss4rec": "recsys.models.ss4rec:SS4Rec",
    "sasrec": "recsys.models.sasrec:SASRec",
    "bias": "recsys.models.baselines:UserItemBias",
    "mean": "recsys.models.baselines:GlobalMean",
    "markov": "recsys.models.baselines:FirstOrderMarkov",
}


def model_class(name: str) -> type[Recommender]:
    """The Recommender subclass registered under `name`."""
    if name not in MODELS:
        raise RecsysError(f"unknown model {name!r} (choose from: {', '.join(MODELS)})")
    module, cls = MODELS[name].split(":")
    return getattr(import_module(module), cls)
