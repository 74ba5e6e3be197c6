"""The Ray Tune executor (``executor``), the one Ray-aware search class (``searcher``),
the trial functions Ray workers run (``trainable``) and the cluster connection
(``cluster``). Everything Ray-specific in dynas lives here."""
