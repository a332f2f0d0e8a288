#!/usr/bin/env bash
# ONE command: set up (first run only) and run the whole test suite, on two pytest-xdist
# workers (a module at a time each, slowest first: tests/conftest.py SLOW_FIRST). Extra
# arguments go to pytest; `-n 0` runs in this process alone.
source "$(dirname "$0")/_venv.sh"
source "$(dirname "$0")/_debian.sh"
need_debian_package prometheus prometheus "the dashboard test"
need_debian_package chromium chromium "the console's browser tests"
exec python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
