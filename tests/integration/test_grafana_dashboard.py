"""The shipped Grafana dashboard against a real Prometheus scraping this session's Ray, and
the timeline pictures of `saga-actors show` and `saga-actors journal show`.

Prometheus (Debian's package; scripts/test.sh installs it where it can) is started on a
free loopback port with Ray's own service-discovery file. Sagas run in two rounds, so that
every counter is seen before and after an increase; then EVERY query of the dashboard is
evaluated through Prometheus's HTTP API, with Grafana's variables filled in, and must
return numbers: the counts by status and outcome exactly, rates and percentiles > 0.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from examples.order_choreography import ORDER_CHOREOGRAPHY
from examples.order_choreography import sample_input as choreography_input
from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.ops.cli import main
from saga_actors.ops.grafana import INSTALLED_NAME, load_dashboard, queries
from tests.cluster import free_port
from tests.conftest import poll, timeline_lanes_and_marks

pytestmark = pytest.mark.ray
INSTALL = "apt-get install -y --no-install-recommends prometheus"


@pytest.fixture(scope="module")
def prometheus(ray_session, tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"prometheus is not installed, and this test needs it: {INSTALL} "
                    "(scripts/test.sh does this where apt-get can)", pytrace=False)
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    discovery = session / "prom_metrics_service_discovery.json"
    poll(discovery.exists, what=f"Ray's service discovery file {discovery}")
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "- job_name: ray\n"
        f"  file_sd_configs: [{{files: ['{discovery}'], refresh_interval: 1s}}]\n")
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
        try:
            return urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    poll(ready, timeout_s=60, every_s=0.2, what="Prometheus ready")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def query(url: str, promql: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?"
                                + urllib.parse.urlencode({"query": promql}), timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def filled(expr: str, namespace: str) -> str:
    """A panel's query as Grafana sends it, for this test's runtime."""
    return (expr.replace("$__rate_interval", "2m").replace("$SessionName", ".+")
            .replace("$namespace", namespace).replace("$saga_type", ".+"))


def by(result: list[dict], *labels: str) -> dict[tuple, float]:
    return {tuple(r["metric"].get(k) for k in labels): float(r["value"][1]) for r in result}


def run_round(rt, n: int) -> list[str]:
    """Two orders that complete, one declined (compensated), one choreographed order."""
    ids = [rt.start("order_fulfillment", sample_input(n + i)) for i in range(2)]
    ids.append(rt.start("order_fulfillment", {**sample_input(n + 2),
                                              "customer_id": "declined"}))
    ids.append(rt.publish(ORDER_CHOREOGRAPHY, "OrderCreated", choreography_input(n + 3),
                          saga_id=f"flow-{n}"))
    for saga_id in ids:
        rt.wait(saga_id, timeout_s=60)
    return ids


def test_every_dashboard_query_returns_the_sagas_numbers(prometheus, make_harness):
    h = make_harness(placement="hosted")
    rt = h.runtime
    ns = rt.config.namespace
    rt.register(ORDER_FULFILLMENT)
    rt.register(ORDER_CHOREOGRAPHY)
    h.deploy_many(PARTICIPANTS)
    totals = filled(next(e for t, e in queries() if t.startswith("Sagas since")), ns)

    first = run_round(rt, 0)
    poll(lambda: by(query(prometheus, totals), "saga_type", "outcome").get(
        ("order_fulfillment", "failed")) == 1, timeout_s=90, every_s=0.5,
        what="the first round's sagas in Prometheus")
    second = run_round(rt, 10)
    statuses = [rt.get(i).status for i in first + second]
    assert statuses.count(SagaStatus.COMPLETED) == 6 and statuses.count(SagaStatus.FAILED) == 2

    want = {("order_fulfillment", "started"): 6, ("order_fulfillment", "completed"): 4,
            ("order_fulfillment", "failed"): 2, ("order_choreography", "started"): 2,
            ("order_choreography", "completed"): 2}
    poll(lambda: by(query(prometheus, totals), "saga_type", "outcome") == want,
         timeout_s=90, every_s=0.5, what=f"Prometheus totals {want}")
    by_status = filled(next(e for t, e in queries() if t == "Sagas by status"), ns)
    poll(lambda: {k: v for k, v in by(query(prometheus, by_status), "status").items() if v}
         == {("COMPLETED",): 6, ("FAILED",): 2}, timeout_s=60, every_s=0.5,
         what="the by-status gauge: 6 COMPLETED, 2 FAILED")

    # every query of every panel: numbers, and the rates and percentiles above zero
    def all_answer() -> dict[str, list[dict]]:
        answers = {}
        for title, expr in queries():
            result = query(prometheus, filled(expr, ns))
            values = [float(r["value"][1]) for r in result]
            if not values or not any(v > 0 and math.isfinite(v) for v in values):
                return {}
            answers[f"{title}: {expr}"] = result
        return answers

    answers = poll(all_answer, timeout_s=60, every_s=1, what="every panel query answered")
    assert len(answers) == len(queries()) == 12
    attempts = filled(next(e for t, e in queries() if t.startswith("Step attempts")), ns)
    outcomes = {o for (_, o) in by(query(prometheus, attempts), "saga_type", "outcome")}
    assert {"succeeded", "failed"} <= outcomes
    choreo = filled(next(e for t, e in queries() if t.startswith("Choreography")), ns)
    assert {w for (_, w) in by(query(prometheus, choreo), "saga_type", "what")} == {
        "delivered", "published"}
    # the requests each participant's replica served (one replica each here)
    served = ("sum by (participant, replica) (ray_saga_actors_participant_requests_total"
              f'{{namespace="{ns}"}})')
    replicas = poll(lambda: by(query(prometheus, served), "participant", "replica"),
                    timeout_s=60, every_s=0.5, what="the participants' requests served")
    assert {p for p, r in replicas if r == "0"} >= {"inventory", "payment", "shipping"}
    assert all(n > 0 for n in replicas.values())

    # the timeline of a declined order, live and offline
    declined = second[2]
    runner = CliRunner()
    live, offline = h.runtime.config.data_dir + "/live.svg", h.runtime.config.data_dir + "/j.svg"
    address = ray.get_runtime_context().gcs_address
    out = runner.invoke(main, ["--address", address, "--namespace", ns, "show", declined,
                               "--timeline", live])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["journal", "--journal", rt.config.journal, "show", declined,
                               "--timeline", offline])
    assert out.exit_code == 0, out.output
    for path in (live, offline):
        lanes, marks = picture(path)
        assert lanes == ["saga", "reserve_inventory", "process_payment"]
        assert {"compensation", "failed", "status"} <= {kind for kind, _ in marks}
    choreographed = runner.invoke(main, ["journal", "--journal", rt.config.journal, "show",
                                         second[3], "--timeline", offline])
    assert choreographed.exit_code == 0, choreographed.output
    lanes, marks = picture(offline)
    assert lanes == ["start", "inventory", "payment", "shipping", "end"]
    assert sum(n for (kind, _), n in marks.items() if kind == "event") == 4


def picture(path: str) -> tuple[list[str], Counter]:
    return timeline_lanes_and_marks(Path(path).read_text())


def test_dashboard_install_writes_the_dashboard_and_refuses_what_it_cannot(ray_session,
                                                                           tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["dashboard", "install", "--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    written = json.loads((tmp_path / INSTALLED_NAME).read_text())
    assert written == load_dashboard()
    assert written["templating"]["list"][0] == {**written["templating"]["list"][0],
                                                "name": "datasource", "query": "prometheus"}
    assert all(t["datasource"] == "${datasource}" for p in written["panels"]
               for t in p["targets"])

    # into the running cluster's Grafana provisioning, next to Ray's own dashboards
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    provisioned = session / "metrics" / "grafana" / "dashboards"
    out = runner.invoke(main, ["--address", ray.get_runtime_context().gcs_address,
                               "dashboard", "install"])
    assert out.exit_code == 0, out.output
    assert (provisioned / INSTALLED_NAME).read_text() == (tmp_path / INSTALLED_NAME).read_text()
    (provisioned / INSTALLED_NAME).unlink()

    fresh = tmp_path / "new" / "dashboards"  # made, as mkdir -p would, and said where
    out = runner.invoke(main, ["dashboard", "install", "--dir", str(fresh)])
    assert out.exit_code == 0, out.output
    assert f"dashboard written to {fresh / INSTALLED_NAME}" in out.output
    assert json.loads((fresh / INSTALLED_NAME).read_text()) == load_dashboard()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out = runner.invoke(main, ["dashboard", "install", "--dir", str(a_file / "sub")])
    assert out.exit_code != 0 and "cannot write the dashboard" in out.output
    assert a_file.read_text() == "x"
    out = runner.invoke(main, ["dashboard", "install"], env={"RAY_ADDRESS": ""})
    assert out.exit_code != 0 and "--dir FOLDER" in out.output
    out = runner.invoke(main, ["--address", ray.get_runtime_context().gcs_address, "show", "x",
                               "--timeline", str(tmp_path / "t.png")])
    assert out.exit_code != 0 and "name a .svg file" in out.output
    assert not (tmp_path / "t.png").exists()
