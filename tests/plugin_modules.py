"""First-party plugin modules for tests that use a method or a model directly, outside a suite."""

from __future__ import annotations

import importlib
from types import ModuleType


def load_plugin(relative: str) -> ModuleType:
    """``"methods/ft.py"`` -> the installed module ``robustprune_plugins.methods.ft``."""
    return importlib.import_module("robustprune_plugins." + relative.removesuffix(".py").replace("/", "."))
