"""Torch work without orchestration: the store, data tensors, training, evaluation, checkpoints, compaction, costs.

Each module does one computation and knows nothing of suites or runs; the
engine decides what to compute and in which order.
"""
