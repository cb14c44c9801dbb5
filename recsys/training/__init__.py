"""Training and evaluating the registered models on the split.

- `train` (`python -m recsys.training.train`): the train@ stage; `Trainer` wires the parts:
  `loop` (the optimisation loop), `state` (early stopping, best epoch, --state / --out),
  `tracking` (dvclive and W&B), `runtime` (device, seeds, memory), `distributed` (torchrun).
- `evaluate` (`python -m recsys.training.evaluate`): the evaluate@ stage.
- `scoring` and `metrics`: scoring queries and ranking metrics, shared by validation, the
  evaluate stage and `leave_one_out` (the literature's protocol, `recsys benchmark`).
- `tensors`: the split as model tensors (event log, query sets, training windows);
  `checkpoint`: saving and rebuilding models.
- `study` (`recsys study`): models x seeds outside DVC, with per-user paired tests;
  `results` (`recsys report`): the README's results tables from the metrics files.
"""
