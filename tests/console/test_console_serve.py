"""``saga-actors console deploy`` on a ``ray start`` cluster: the console is a Ray Serve
application that Ray's dashboard lists, reached through Serve's proxy."""

from __future__ import annotations

import http.client
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from tests.cluster import BIN, LocalCluster, free_port
from tests.conftest import poll

TOKEN = "serve-console-token"


def _get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def cluster():
    c = LocalCluster()
    try:  # (stopped also when its start times out: a cluster left running slows the rest)
        yield c.start()
    finally:
        c.stop()


def test_console_deploy_serves_it_through_ray_serve_and_the_dashboard_lists_it(
        cluster, tmp_path):
    launched = cluster.run(sys.executable, "scripts/launch_sagas.py", "--address",
                           cluster.address, "--count", "2", "--json", "--placement", "hosted",
                           "--data-dir", str(tmp_path / "data"))
    ids = [s["saga_id"] for s in json.loads(launched.stdout)["sagas"]]
    port = free_port()
    deployed = cluster.run(str(BIN / "saga-actors"), "console", "deploy", "--port", str(port),
                           "--route-prefix", "/sagas", SAGA_ACTORS_CONSOLE_TOKEN=TOKEN)
    base = f"http://127.0.0.1:{port}/sagas"
    assert f"saga_actors_console is RUNNING: {base}/" in deployed.stdout, deployed.stderr
    # through Serve's proxy: the same registry the CLI asks
    overview = poll(lambda: _get(f"{base}/api/overview", TOKEN), what="the console to answer")
    assert overview[0] == 200, overview
    assert json.loads(overview[1])["counts"]["COMPLETED"] == 2
    status, page = _get(f"{base}/sagas/{ids[0]}", TOKEN)
    assert status == 200 and ids[0] in page and 'href="/sagas/sagas?status=' not in page
    assert 'href="/sagas/static/console.css"' in page  # links know the route prefix
    # a live part is long-polled through Serve's proxy too: held, then nothing new (204)
    seq = json.loads(_get(f"{base}/api/sagas/{ids[0]}", TOKEN)[1])["seq"]
    assert _get(f"{base}/live/sagas/{ids[0]}?have={seq}&wait=1", TOKEN)[0] == 204
    status, fresh = _get(f"{base}/live/sagas/{ids[0]}?have=0", TOKEN)
    assert status == 200 and "COMPLETED" in fresh
    # signing in knows the route prefix too: back to the page asked for, a cookie for it
    page_path = f"/sagas/sagas/{ids[0]}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", page_path)
    asked = conn.getresponse()
    asked.read()
    assert asked.status == 303
    assert asked.getheader("location") == f"/sagas/login?next={quote(page_path, safe='')}"
    conn.request("POST", "/sagas/login", body=urlencode({"token": TOKEN, "next": page_path}),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    signed = conn.getresponse()
    signed.read()
    assert signed.status == 303 and signed.getheader("location") == page_path
    assert "Path=/sagas" in signed.getheader("set-cookie")
    assert _get(f"{base}/api/overview", None)[0] == 401
    assert _get(f"{base}/api/overview", "wrong")[0] == 401
    # Ray's dashboard (its Serve view reads this REST API) lists the application
    ray_token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    status, apps = _get(f"http://127.0.0.1:{cluster.dashboard_port}/api/serve/applications/",
                        ray_token)
    assert status == 200, apps
    app = json.loads(apps)["applications"]["saga_actors_console"]
    assert app["status"] == "RUNNING" and app["route_prefix"] == "/sagas"
    removed = cluster.run(str(BIN / "saga-actors"), "console", "remove")
    assert "saga_actors_console removed" in removed.stdout
