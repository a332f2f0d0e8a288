"""A payment provider's webhook as its own process: events from outside into running sagas.

    python scripts/webhook.py CHOREOGRAPHY --address ADDR [--namespace NS] < events.jsonl

Each line on stdin is one event, ``{"event": "PaymentCaptured", "payload": {...}, "id":
"..."}`` (``"saga_id"`` optional: without it the saga is found by the event's correlation
field). It attaches to the cluster once and publishes each through the supervisor, as
``saga-actors publish`` does; one JSON line per event on stdout says where it went, or
what refused it (a finished saga, no saga with that order id...). The same id sent again
is kept once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from saga_actors.ops import actions  # noqa: E402
from saga_actors.ops.cluster import Cluster  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("choreography")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    p.add_argument("--namespace", default="saga_actors")
    args = p.parse_args(argv)
    cluster = Cluster(args.address, args.namespace)
    for line in sys.stdin:
        if not line.strip():
            continue
        event = json.loads(line)
        try:
            said = actions.publish(cluster, args.choreography, event["event"], event["payload"],
                                   saga_id=event.get("saga_id"), event_id=event.get("id"),
                                   version=None)
            answer = {"id": event.get("id"), "ok": True, "said": said}
        except Exception as exc:  # noqa: BLE001 - say it (a ClickException), go on
            said = str(exc) if type(exc).__name__ == "ClickException" else (
                f"{type(exc).__name__}: {exc}")
            answer = {"id": event.get("id"), "ok": False, "error": said}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
