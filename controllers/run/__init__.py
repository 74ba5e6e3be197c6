"""A run's phases, written once: the executor seam (``executor``), the in-process
executor (``in_process``), the checks before a run (``prepare``), the phases
(``supernet``, ``confirm``, ``baselines``) and the session that assembles them
(``session``). Nothing here imports Ray; ``controllers.tune`` is the Ray executor."""
