"""The test split's daily release: the split stage, one stage per day, quality and validation.

- `split` (`python -m recsys.etl.split`): the global temporal split (train / val / test).
- `day` (`python -m recsys.etl.day`): the batch@N stage, day N of the test split, validated.
- `quality`: row rules and quality scores shared by the day stage and `recsys validate`.
- `validate`: `recsys validate FILE`, a ratings file screened line by line, with a quarantine.
- `run`: `recsys etl` (which day is next, run it through DVC, the ETL lock).
"""
