"""MovieLens recommender pipeline: SS4Rec vs NCF."""
