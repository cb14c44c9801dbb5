"""Recommenders behind one interface (`base.Recommender`), looked up by name."""
