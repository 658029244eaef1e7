"""The robustness report: built from a suite's results, rendered as tables, JSON, Markdown and figures.

Works on plain data (:class:`robustprune.core.results.SuiteRun` in, JSON-able
dicts out), so ``robustprune report RESULTS.json`` re-renders a report without
torch and without recomputing anything.
"""
