"""Prefect flows over the DVC pipeline: thin wrappers that run `dvc repro <stage>` and publish.

Every task runs DVC through `recsys.pipeline.run_dvc` or reads DVC's state through
`recsys.pipeline.stage_states` / `recsys.etl.run`; no flow re-implements a stage.
"""
