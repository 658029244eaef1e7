"""``python -m robustprune``: the ``robustprune`` command, for environments whose scripts are not on PATH."""

from .cli import run_main

if __name__ == "__main__":
    raise SystemExit(run_main())
