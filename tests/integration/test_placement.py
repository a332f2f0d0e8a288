"""The runtime on a `ray start` cluster that grows. With hosts="auto", a node joining
while sagas run raises the number of hosts, and every saga in flight completes once.
Participants that ask Ray for resources: one lands on the node that has its custom
resource, replicas included; one that no node can hold is a clear error within seconds,
not a hang, and leaves nothing pending."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cluster import ROOT, LocalCluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster()
    try:  # (stopped also when its start times out: a cluster left running slows the rest)
        yield c.start()  # one node, 2 CPUs: one host with hosts="auto"
    finally:
        c.stop()


def result(text: str) -> dict:
    line = next(ln for ln in text.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


GROW = """
import collections, json, sys, time, ray
from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaRuntime
from saga_actors.ray.host_count import current_hosts
from saga_actors.testing import Fault
rt = SagaRuntime(sagas=[ORDER_FULFILLMENT], data_dir=DATA, namespace="grow", hosts="auto",
                 ray_init={"logging_level": "ERROR"})  # RAY_ADDRESS: the test's cluster
# each step 7 s (under its 10 s timeout): the sagas are in flight for 21 s or more, while
# the node joins (a slow hour of this 2-core VM took more than 14 s to start one)
slow = Fault(delay_s=7)
rt.deploy_many(PARTICIPANTS, faults={"inventory": {"reserve_inventory": slow},
                                     "payment": {"process_payment": slow},
                                     "shipping": {"create_shipment": slow}})
ids = [rt.start(ORDER_FULFILLMENT.name, sample_input(i), placement="hosted")
       for i in range(24)]
print("HOSTS", current_hosts(rt.config, fresh=True), flush=True)
sys.stdin.readline()  # the test added a node
deadline = time.monotonic() + 120
while current_hosts(rt.config, fresh=True) < 2:
    assert time.monotonic() < deadline, "the hosts did not follow the new node"
    time.sleep(0.2)
ids += [rt.start(ORDER_FULFILLMENT.name, sample_input(i), placement="hosted")
        for i in range(24, 36)]
records = rt.wait_all(ids, timeout_s=180)
effects = collections.Counter()
for name, actor in ((p.name, ray.get_actor("participant:" + p.name, "grow"))
                    for p in PARTICIPANTS):
    for saga_id in ids:
        for e in ray.get(actor.ledger.remote(saga_id)):
            effects[saga_id + " " + name + "." + e["method"]] += 1
moved = sum(1 for i in ids for t in rt.history(i) if t.event == "resumed")
print("RESULT", json.dumps({
    "statuses": sorted({r.status.value for r in records}), "sagas": len(records),
    "effects": sorted(set(effects.values())), "per_saga": len(effects) / len(ids),
    "hosts": current_hosts(rt.config, fresh=True), "moved": moved}))
"""


def test_with_hosts_auto_a_node_joining_raises_the_hosts_and_every_saga_completes_once(
        cluster, tmp_path):
    driver = subprocess.Popen(
        [sys.executable, "-c", f"DATA = {str(tmp_path / 'data')!r}\n" + GROW],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cluster.env(RAY_ADDRESS=cluster.address), cwd=ROOT)
    try:
        first = driver.stdout.readline()
        assert first.startswith("HOSTS 1"), (first, driver.stderr.read()[-3000:])
        cluster.add_worker(num_cpus=2, resources={"payment_licence": 4})  # 4 CPUs: 2 hosts
        out, err = driver.communicate("added\n", timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, err[-4000:]
    got = result(out)
    assert got["statuses"] == ["COMPLETED"] and got["sagas"] == 36
    assert got["effects"] == [1] and got["per_saga"] == 3  # every effect once, per saga
    assert got["hosts"] == 2
    assert got["moved"] > 0  # sagas in flight went on from the journal on their new host


PLACE = """
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
        cluster, tmp_path):
    if not cluster.worker_nodes:  # (run alone: the node with the licence joins now)
        cluster.add_worker(num_cpus=2, resources={"payment_licence": 4})
    licensed = next(iter(cluster.worker_nodes))
    out = cluster.run(sys.executable, "-c", f"DATA = {str(tmp_path / 'data')!r}\n" + PLACE,
                      timeout_s=240)
    got = result(out.stdout)
    assert got["nodes"] == [licensed, licensed]  # both replicas, on its node
    assert got["refused"] == ("participant 'gpu_payment' cannot be placed: it asks for "
                              "GPU=1, and none of the 2 alive node(s) has that")
    assert got["took"] < 5 and got["pending"] is False
