#!/usr/bin/env bash
# ONE command: set up (first run only) and run the whole test suite, on two pytest-xdist
# workers (a module at a time each, slowest first: tests/conftest.py SLOW_FIRST). Extra
# arguments go to pytest; `-n 0` runs in this process alone.
source "$(dirname "$0")/_venv.sh"
source "$(dirname "$0")/_prometheus.sh"
source "$(dirname "$0")/_chromium.sh"
exec python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
