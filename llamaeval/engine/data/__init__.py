"""Data files of the engine: the shipped second-stage model documents, ``ltr-v<version>.json``
(one file per version: the default and every older version kept; see ``llamaeval.engine._models``)."""
