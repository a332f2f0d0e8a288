#!/usr/bin/env bash
# ONE command: set up (first run only) and run the order-fulfillment example on an
# embedded local Ray with the SQLite journal. Extra arguments go to launch_sagas.py.
source "$(dirname "$0")/_venv.sh"
exec python scripts/launch_sagas.py "$@"
