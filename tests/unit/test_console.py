"""The console's pages and guards without Ray: a fake source answers as the registry and the
supervisor would; everything else (escaping, tokens, CSRF, headers, masking) is the real
code."""

from __future__ import annotations

import re
import time

import pytest
from pydantic import BaseModel, SecretStr
from starlette.testclient import TestClient

from saga_actors.ops.console import ConsoleSettings, build_app
from saga_actors.ops.console.app import list_filters, safe_next
from saga_actors.ops.console.security import HEADERS
from saga_actors.ops.console.settings import token_hash
from saga_actors.ops.console.source import ConsoleError, mask_input

TOKEN = "unit-token"
EVIL = "<script>window.evil=1</script>"
NOW = time.time()  # the fake's clock stands still: a live part changes only when told


def entry(saga_id: str, status: str = "FAILED", **more) -> dict:
    now = NOW
    return {"saga_id": saga_id, "saga_type": f"order{EVIL}", "status": status,
            "placement": "hosted", "current_step": f"pay{EVIL}", "attempt": 1, "restarts": 0,
            "seq": 3, "created_at": now - 5, "updated_at": now, "finished_at": None,
            "error": f"declined {EVIL}", "waiting_for": None, **more}


def info(saga_id: str, status: str = "FAILED") -> dict:
    now = NOW
    return {**entry(saga_id, status), "runner": "saga_host:0", "parent_id": None,
            "children": [], "version": 1, "shape": None, "pivot": None,
            "completed_steps": [], "compensated_steps": [], "awaiting": None,
            "awaiting_s": None, "signals_awaited": [], "events": [],
            "steps": [{"step": f"pay{EVIL}", "phase": "action", "attempts": 1,
                       "started_at": now - 1, "ended_at": now, "outcome": "failed",
                       "last_error": f"boom {EVIL}"}],
            "history": [{"saga_id": saga_id, "seq": 0, "at": now - 1, "event": "action_sent",
                         "status": status, "step": f"pay{EVIL}", "attempt": 1,
                         "detail": {"error": EVIL}}]}


class FakeSource:
    """Answers like the registry; records the actions it is asked for."""

    def __init__(self) -> None:
        self.acted: list[tuple] = []

    def overview(self) -> dict:
        return {"at": NOW, "counts": {"FAILED": 1, "STUCK": 1},
                "by_type": {f"order{EVIL}": {"FAILED": 1}},
                "activity": {"since": 0.0, "bucket_s": 60.0, "starts": [1, 0], "ends": [0, 1]},
                "stuck": [entry("s-stuck", "STUCK")], "stuck_total": 1}

    def sagas(self, **filters) -> list[dict]:
        self.filters = filters
        return [entry("s-1")]

    def saga(self, saga_id: str) -> dict:
        if saga_id == "missing":
            raise ConsoleError("no saga with id 'missing'", 404)
        return info(saga_id, "PENDING" if saga_id.startswith("run") else "FAILED")

    def seq(self, saga_id: str) -> int:
        self.seq_asked = getattr(self, "seq_asked", 0) + 1
        return self.saga(saga_id)["seq"]

    def act(self, action: str, saga_id: str, **fields) -> str:
        self.acted.append((action, saga_id, fields))
        if fields.get("reason") == "refuse":
            raise ConsoleError(f"saga {saga_id} cannot be cancelled: it is past its pivot", 409)
        return f"{action} done"

    def saga_input(self, saga_id: str) -> dict:
        return {"ref": "r-1", "card": "**********"}


def client(**settings) -> tuple[TestClient, FakeSource]:
    settings.setdefault("token_sha256", token_hash(TOKEN))
    source = FakeSource()
    app = build_app(ConsoleSettings(**settings), source)  # type: ignore[arg-type]
    return TestClient(app, base_url="http://console.test", follow_redirects=False), source


def signed_in(c: TestClient) -> TestClient:
    answer = c.post("/login", data={"token": TOKEN, "next": "/"})
    assert answer.status_code == 303 and "saga_console_session" in answer.cookies
    return c


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


@pytest.mark.parametrize("path", ["/", "/sagas", "/sagas/s-1", "/live/overview",
                                  "/live/sagas/s-1"])
def test_a_saga_s_data_is_text_never_markup(path):
    c = signed_in(client()[0])
    html = c.get(path).text
    assert "<script>window.evil" not in html
    assert "&lt;script&gt;window.evil=1&lt;/script&gt;" in html


def test_every_response_sets_the_security_headers():
    c, _ = client()
    for answer in (c.get("/"), c.get("/login"), c.get("/static/console.js"),
                   c.get("/api/overview"), c.post("/act/cancel/s-1"), c.get("/nowhere")):
        for name, value in HEADERS.items():
            if name == "cache-control" and answer.request.url.path.startswith("/static/"):
                continue
            assert answer.headers.get(name) == value, (answer.request.url, name)
    assert "script-src 'self'" in HEADERS["content-security-policy"]  # no inline script runs


def test_without_the_token_nothing_is_read_and_nothing_done():
    c, source = client()
    assert c.get("/").status_code == 303 and c.get("/").headers["location"].startswith("/login")
    assert c.get("/api/sagas").status_code == 401
    assert c.get("/live/sagas/s-1").status_code == 401
    refused = c.post("/act/cancel/run-1", data={"confirm": "yes"})
    assert refused.status_code == 401 and "sign in" in refused.text
    wrong = c.post("/act/cancel/run-1", data={"confirm": "yes"},
                   headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401
    assert c.post("/login", data={"token": "not-it"}).status_code == 401
    forged = {"cookie": "saga_console_session=\xe9.\xe9".encode("latin-1")}  # any bytes
    assert c.get("/", headers=forged).status_code == 303  # not signed in, never a crash
    assert source.acted == []


def test_a_bearer_token_acts_and_the_answer_is_the_cli_s():
    c, source = client()
    bearer = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    done = c.post("/act/cancel/run-1", data={"reason": "customer"}, headers=bearer)
    assert done.status_code == 200 and done.json() == {"answer": "cancel done"}
    refused = c.post("/act/cancel/run-1", data={"reason": "refuse"}, headers=bearer)
    assert refused.status_code == 409
    assert refused.json()["error"] == "saga run-1 cannot be cancelled: it is past its pivot"
    assert source.acted == [("cancel", "run-1", {"reason": "customer"}),
                            ("cancel", "run-1", {"reason": "refuse"})]


def test_a_browser_session_needs_the_csrf_token_a_confirmation_and_this_site():
    c, source = client()
    signed_in(c)
    page = c.get("/sagas/run-1").text
    csrf = csrf_of(page)
    assert c.post("/act/cancel/run-1", data={"confirm": "yes"}).status_code == 403
    assert c.post("/act/cancel/run-1", data={"confirm": "yes", "csrf": "0" * 32}
                  ).status_code == 403
    assert c.post("/act/cancel/run-1", data={"confirm": "yes", "csrf": "é" * 32}
                  ).status_code == 403  # any text: refused, never a crash
    other_site = c.post("/act/cancel/run-1", data={"confirm": "yes", "csrf": csrf},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert other_site.status_code == 403 and "another site" in other_site.text
    unconfirmed = c.post("/act/cancel/run-1", data={"csrf": csrf, "reason": "r"})
    assert unconfirmed.status_code == 200 and "Yes, cancel" in unconfirmed.text
    assert source.acted == []
    done = c.post("/act/cancel/run-1", data={"confirm": "yes", "csrf": csrf, "reason": "r"},
                  headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 200 and 'data-flash="ok"' in done.text
    assert source.acted == [("cancel", "run-1", {"reason": "r"})]


def test_a_bad_signal_payload_or_action_changes_nothing():
    c, source = client()
    signed_in(c)
    csrf = csrf_of(c.get("/sagas/run-1").text)
    bad = c.post("/act/signal/run-1", data={"confirm": "yes", "csrf": csrf,
                                            "name": "approval", "data": "{not json"})
    assert bad.status_code == 400 and "the payload is not JSON" in bad.text
    assert c.post("/act/explode/run-1", data={"csrf": csrf}).status_code == 404
    assert source.acted == []


def test_read_only_pages_are_open_only_when_configured_so_and_never_actions():
    c, source = client(token_sha256=None, open_read=True)
    assert c.get("/").status_code == 200 and c.get("/api/sagas").status_code == 200
    refused = c.post("/act/cancel/run-1", data={"confirm": "yes"})
    assert refused.status_code == 403 and "actions are off" in refused.text
    assert source.acted == []
    with pytest.raises(ValueError, match="no token, so nothing could open it"):
        ConsoleSettings(token_sha256=None)


def test_list_filters_are_checked_and_a_bad_one_says_which():
    assert list_filters({"status": "failed", "type": "order", "version": "2", "q": "ord-"}) == {
        "status": "FAILED", "saga_type": "order", "version": 2, "id_prefix": "ord-"}
    got = list_filters({"since": "2026-01-02T03:04:05", "until": "2026-01-03T00:00"})
    assert got["until"] - got["since"] > 20 * 3600
    for bad, says in (({"status": "DONE"}, "status 'DONE'"), ({"version": "x"}, "version"),
                      ({"since": "yesterday"}, "from 'yesterday'"),
                      ({"within": "-5"}, "created within")):
        with pytest.raises(ValueError, match=says):
            list_filters(bad)
    c = signed_in(client()[0])
    for bad, says in (("page=-1", "page &#x27;-1&#x27; is not a whole number"),
                      ("page=x", "page &#x27;x&#x27;")):
        answer = c.get(f"/sagas?{bad}")
        assert answer.status_code == 400 and says in answer.text
    for bad in ("limit=0", "limit=5000", "offset=-3", "offset=y"):
        answer = c.get(f"/api/sagas?{bad}")
        assert answer.status_code == 400 and bad.split("=")[0] in answer.json()["error"]
    answer = c.get("/sagas?version=two")
    assert answer.status_code == 400 and "version &#x27;two&#x27; is not a whole number" in \
        answer.text


def test_after_signing_in_it_goes_back_to_this_console_only():
    assert safe_next("", "/sagas?status=FAILED") == "/sagas?status=FAILED"
    assert safe_next("/sagas", "/sagas/sagas/x") == "/sagas/sagas/x"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil", None, "sagas",
                 "/\t/evil.example/"):
        assert safe_next("", evil) == "/"


class Card(BaseModel):
    number: SecretStr
    holder: str


class Order(BaseModel):
    ref: str
    pin: SecretStr
    card: Card


def test_secret_fields_are_masked_in_the_input_shown():
    raw = {"ref": "r-1", "pin": "1234", "card": {"number": "4111", "holder": "Ada"}}
    shown = mask_input(Order, raw, "'order' v1")
    assert shown == {"ref": "r-1", "pin": "**********",
                     "card": {"number": "**********", "holder": "Ada"}}
    with pytest.raises(ConsoleError, match="no longer validates"):
        mask_input(Order, {"ref": "r-1"}, "'order' v1")


def test_a_choreography_s_page_shows_its_event_chain_and_what_it_waits_for():
    from saga_actors.ops.console.pages import saga_live

    chor = {**info("c-1", "PENDING"), "placement": "choreography",
            "awaiting": "PaymentAuthorized from payment.authorize", "awaiting_s": 4.0,
            "events": [{"id": "e1", "type": "OrderPlaced", "producer": "client",
                        "consumer": "inventory.reserve", "causation_id": None, "at": 1.0},
                       {"id": "e2", "type": f"Reserved{EVIL}", "producer": "inventory.reserve",
                        "consumer": "payment.authorize", "causation_id": "e1", "at": 2.0}],
            "signals_awaited": [{"step": "approve", "signal": "approval", "until": 9.0}]}
    html = saga_live("", chor)
    chain = html.split("<h2>Event chain</h2>", 1)[1].split("<h2>History</h2>")[0]
    assert chain.count("<tr>") == 3  # the header and the two events, in order
    assert chain.index("OrderPlaced") < chain.index("Reserved&lt;script&gt;")
    assert "payment.authorize" in chain and ">e1<" in chain  # consumer; cause
    waiting = html.split('data-fact="waiting for">', 1)[1].split("</dd>")[0]
    assert "signal &#x27;approval&#x27; (step approve" in waiting
    assert "PaymentAuthorized from payment.authorize (since 20" in waiting


def test_a_live_part_is_held_until_it_changes_and_then_sent_once():
    c, source = client(live_every_s=0.05, overview_every_s=0.05)
    signed_in(c)
    first = c.get("/live/sagas/run-1")
    assert first.status_code == 200 and first.headers["x-live-tag"] == "3"  # its seq
    started = time.monotonic()
    same = c.get("/live/sagas/run-1?have=3&wait=0.3")  # nothing new: held, then 204
    assert same.status_code == 204 and time.monotonic() - started >= 0.3
    assert source.seq_asked >= 3  # asked again while it held the request
    moved = c.get("/live/sagas/run-1?have=2&wait=20")  # the page's copy is older: at once
    assert moved.status_code == 200 and "run-1" in moved.text
    tag = c.get("/live/overview").headers["x-live-tag"]
    assert c.get(f"/live/overview?have={tag}&wait=0.1").status_code == 204
    assert c.get("/live/overview?have=old").status_code == 200
    for bad in ("soon", "nan", "-1"):  # a bad wait is no wait (never a busy loop)
        started = time.monotonic()
        assert c.get(f"/live/sagas/run-1?have=3&wait={bad}").status_code == 204
        assert time.monotonic() - started < 2.0  # (a busy loop would never answer)


def test_a_child_saga_s_id_with_a_slash_is_one_id_in_every_route():
    c, source = client()
    signed_in(c)
    child = "run-1/issue_eticket"  # (the fake answers PENDING for run-*)
    page = c.get(f"/sagas/{child}")
    assert page.status_code == 200 and f'data-live="/live/sagas/{child}"' in page.text
    assert c.get(f"/live/sagas/{child}").status_code == 200
    assert c.get(f"/api/sagas/{child}").json()["saga_id"] == child
    bearer = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    assert c.post(f"/act/retry/{child}", headers=bearer).status_code == 200
    assert source.acted == [("retry", child, {})]
    assert c.get("/sagas/missing").status_code == 404


def test_saga_actors_console_on_a_taken_port_is_a_clear_error_before_anything_else():
    import socket

    from click.testing import CliRunner

    from saga_actors.ops.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        answer = CliRunner().invoke(main, ["--address", "127.0.0.1:1", "console", "--port",
                                           str(port), "--token", "t"])
    assert answer.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in answer.output  # (Ray never attached)
