"""MovieLens data: canonical format, sources (GroupLens, PyPI, local zip) and synthetic data."""
