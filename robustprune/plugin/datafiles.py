"""Helpers for dataset plugins that read files from disk: clear errors, seeded subsets.

A dataset read from disk fails in predictable ways (a folder in the wrong
place, a truncated download, a file in another format). :class:`DataFileError`
carries what a user needs to fix it: the path looked at, the layout expected
there and the fix. :func:`stratified_subset` picks the seeded, class-balanced
train and test subsets that let a CPU user run a small but meaningful version
of a paper-scale suite. :func:`load_data_pickle` reads pickle-format data
files (CIFAR's python batches) without letting them run code.

This module imports numpy only; plugins import it freely.
"""

from __future__ import annotations

import numbers
import pickle
from typing import IO, Any

import numpy as np

from .errors import DataFileError  # re-exported: plugins import it from here

__all__ = ["DataFileError", "UnsafePickleError", "load_data_pickle", "stratified_subset", "subset_size"]


def subset_size(value: Any, total: int, what: str) -> int:
    """The number of items a ``train_subset`` / ``test_subset`` parameter asks for.

    ``None`` means all ``total``; an integer is a count (1..total); a float in
    (0, 1] is a fraction of ``total``.
    """
    if value is None:
        return total
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a count (int) or a fraction in (0, 1] (float), got {value!r}")
    if isinstance(value, numbers.Integral):
        if not 1 <= int(value) <= total:
            raise ValueError(f"{what} = {value} must be between 1 and the {total} available images")
        return int(value)
    if not 0 < float(value) <= 1:
        raise ValueError(f"{what} = {value} is a fraction and must be in (0, 1]; write a count as an int")
    return max(1, round(float(value) * total))


def stratified_subset(labels: np.ndarray, size: int, seed: int, salt: str = "") -> np.ndarray:
    """Sorted indices of ``size`` items drawn without replacement, each class keeping its share.

    Class quotas are proportional to the class counts (largest remainder, so
    the total is exact); which items of a class are taken depends only on
    ``seed`` and ``salt`` (use different salts for the train and test subsets).
    ``size == len(labels)`` returns every index, in order.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 < size <= n:
        raise ValueError(f"subset size {size} must be between 1 and {n}")
    if size == n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (size / n)
    quota = np.floor(exact).astype(np.int64)
    # hand the remaining items to the classes with the largest remainders (ties: smaller class id)
    order = np.lexsort((classes, -(exact - quota)))
    quota[order[: size - int(quota.sum())]] += 1
    rng = np.random.default_rng([seed, *salt.encode()])
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota) if q]
    return np.sort(np.concatenate(chosen))


# What a pickled data file may reference: numpy arrays and scalars (under numpy 1's and numpy 2's module
# names), and the codec Python 3 uses for bytes in protocol 2. Containers, strings and numbers need no global.
_DATA_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("builtins", "bytearray"), ("__builtin__", "bytearray"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """A data pickle referenced something other than plain data (a function, a class): it was not loaded."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _DATA_GLOBALS:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: a data file may hold only dicts, lists, strings, bytes, numbers "
                "and numpy arrays, and this one asks to import code (it may have been crafted to run it)")
        return super().find_class(module, name)


def load_data_pickle(file: IO[bytes], encoding: str = "latin1") -> Any:
    """Unpickle a data file (CIFAR's python batches and meta files) admitting only plain data.

    Dicts, lists, tuples, strings, bytes, numbers and numpy arrays load as
    ``pickle.load`` would load them; anything else a pickle can ask for (a
    function to call, a class to build: how a crafted file runs code) raises
    :class:`UnsafePickleError` before it is imported. ``encoding`` decodes
    Python 2 strings, as in ``pickle.load``.
    """
    return _DataUnpickler(file, encoding=encoding).load()
