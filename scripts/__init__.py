"""The project's scripts, run as files (`python scripts/bench.py`); a package so that
they share `scripts/plots.py`."""
