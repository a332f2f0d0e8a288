"""Participants that ask Ray for resources, on a `ray start` cluster: one lands on the node
that has its custom resource, replicas included; one that no node can hold is a clear
error within seconds, not a hang, and leaves nothing pending."""

from __future__ import annotations

import json
import sys

import pytest

from tests.cluster import LocalCluster

pytestmark = pytest.mark.ray

SCRIPT = """
import json, time, ray
from saga_actors import SagaRuntime, ParticipantPlacementError
from tests.placed import GpuPayment, LicensedPayment
rt = SagaRuntime(data_dir=DATA, namespace="placed",  # RAY_ADDRESS: the test's cluster
                 ray_init={"logging_level": "ERROR"})
rt.deploy(LicensedPayment, replicas=2)
nodes = [ray.get(ray.get_actor(n, "placed").served.remote())["node"]
         for n in ("participant:licensed_payment", "participant:licensed_payment:1")]
began = time.monotonic()
try:
    rt.deploy(GpuPayment)
    refused = None
except ParticipantPlacementError as exc:
    refused = str(exc)
took = time.monotonic() - began
try:
    ray.get_actor("participant:gpu_payment", "placed")
    pending = True
except ValueError:
    pending = False
print("RESULT", json.dumps({"nodes": nodes, "refused": refused, "took": took,
                            "pending": pending}))
"""


def test_a_participant_lands_where_its_resource_is_and_one_no_node_can_hold_is_refused(
        tmp_path):
    cluster = LocalCluster().start().add_worker(resources={"payment_licence": 4})
    try:
        licensed = next(iter(cluster.worker_nodes))
        out = cluster.run(sys.executable, "-c",
                          f"DATA = {str(tmp_path / 'data')!r}\n" + SCRIPT, timeout_s=240)
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
        result = json.loads(line.removeprefix("RESULT "))
        assert result["nodes"] == [licensed, licensed]  # both replicas, on its node
        assert result["refused"] == ("participant 'gpu_payment' cannot be placed: it asks "
                                     "for GPU=1, and none of the 2 alive node(s) has that")
        assert result["took"] < 5 and result["pending"] is False
    finally:
        cluster.stop()
