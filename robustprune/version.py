"""The version of robustprune: one source for the package metadata, ``--version``, reports and exports."""

__version__ = "0.1.0"
