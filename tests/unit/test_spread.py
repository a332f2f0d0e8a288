"""Where pooled actors go on several nodes: round-robin by index, each kind starting at
another node, so no node holds more than its share of any kind (no Ray)."""

from __future__ import annotations

from collections import Counter

from saga_actors.services.spread import KINDS, fair_share, spread_node


def test_every_kind_is_spread_and_no_node_holds_more_than_its_share():
    nodes = ["c", "a", "b"]
    for count in (1, 2, 3, 4, 7):
        for kind in KINDS:
            placed = Counter(spread_node(nodes, kind, i) for i in range(count))
            assert max(placed.values()) <= fair_share(count, len(nodes)), (kind, placed)
            assert len(placed) == min(count, len(nodes))
    # two hosts, two buses and three participants on three nodes: every node gets some
    every = Counter([*(spread_node(nodes, "participant", i) for i in range(3)),
                     *(spread_node(nodes, "hosted", i) for i in range(2)),
                     *(spread_node(nodes, "choreography", i) for i in range(2))])
    assert sorted(every.values()) == [2, 2, 3]


def test_the_choice_does_not_depend_on_the_order_nodes_are_listed_in():
    assert spread_node(["b", "a"], "hosted", 0) == spread_node(["a", "b", "a"], "hosted", 0)
    assert spread_node([], "participant", 0) is None
