"""Data files of the engine (the shipped second-stage weights, ltr.json)."""
