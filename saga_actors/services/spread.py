"""Where the long-lived pooled actors go on a cluster of several nodes. No Ray.

Participants, saga hosts and buses ask for no CPU, so Ray's ``SPREAD`` strategy (a hint)
may put them all on one node. Instead each is given a node, round-robin over the alive
nodes by its index within its kind (soft: if that node is gone when Ray restarts it, Ray
puts it on another). Each kind starts at another node, so that with fewer actors of a
kind than nodes, the kinds do not all pile on the first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

KINDS = ("participant", "hosted", "choreography")


def spread_node(nodes: Iterable[str], kind: str, index: int) -> str | None:
    """The node for actor ``index`` of ``kind`` among ``nodes`` (None: no node known)."""
    ordered = sorted(set(nodes))
    if not ordered:
        return None
    return ordered[(index + KINDS.index(kind)) % len(ordered)]


def fair_share(count: int, nodes: int) -> int:
    """The most actors of one kind a node holds when ``count`` are spread over ``nodes``."""
    return math.ceil(count / max(nodes, 1))
