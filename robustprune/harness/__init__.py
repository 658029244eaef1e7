"""The pytest side: options, parametrization, fixtures, generated gate checks, data skips, export at the end.

``plugin`` is the ``pytest11`` entry point; it loads in every pytest run of
an environment where robustprune is installed, so nothing here imports torch
at import time: the engine is built when the first suite is collected.
"""
