"""Offline replay of two recommenders over the daily batches, honest under repeated looks.

- `stats`: fixed-sample statistics on per-user arrays (paired t, BCa bootstrap, sign-flip
  permutation, Welch, delta-method lift, per-event clustered delta method, exact SRM,
  Holm/BH); pure, no I/O.
- `sequential`: group-sequential alpha spending, boundaries, repeated p-values and CIs, MDE.
- `outcomes`: serving day N (joining batches with prediction files), per-event and per-user
  outcomes, the salted-hash arm assignment, other seeds' outcomes, user segments.
- `analysis`: one look's analysis of both designs, both units, every metric, segments, seeds.
- `stage` (`python -m recsys.abtest.stage`): the abtest@N DVC stage; `report`: the report
  stage (metrics/summary.json and the effect plot data); `compare`: `recsys compare`, the
  same paired statistics between two experiments; `fake`: realistic fake inputs for tests
  and benchmarks (`recsys bench ab` lives in recsys.bench.ab); `aa` (`python -m
  recsys.abtest.aa`): A/A replays through the stage's own code.
"""
