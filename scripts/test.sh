#!/usr/bin/env bash
# ONE command: set up (first run only) and run the whole test suite.
source "$(dirname "$0")/_venv.sh"
exec python -m pytest "$@"
