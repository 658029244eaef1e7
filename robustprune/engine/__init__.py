"""One run of a suite: plan -> parents -> cascades -> evaluations -> results.

``engine`` is the run itself; ``context`` holds its options and the narrow
view that measures receive; ``shifted`` the shifted test sets; ``similarity``,
``features`` and ``robust_training`` the measures beyond accuracy;
``factory`` builds an engine from a picklable job; ``executors`` runs jobs
elsewhere; ``export`` writes the networks that passed.

Importing this package imports nothing else (``engine`` imports torch).
"""
