"""`recsys bench …`: benchmarks that print JSON; none of them is a pipeline stage.

`scan` (our scans against public CPU peers), `train` (training samples/s), `eval` (scoring
queries/s, fast path against the reference), `demo` (every `dvc repro` stage on a fresh
clone), `etl` (split and daily batches at scale), `scale` (the pipeline's work at MovieLens
release sizes), `ab` (the A/B statistics at ml-100k size and larger).
"""
