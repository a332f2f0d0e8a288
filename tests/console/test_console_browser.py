"""The saga console as a person uses it: a real (Debian) Chromium, driven by Playwright,
against a real runtime's registry and supervisor, the console served as
``saga-actors console`` serves it. Outcomes are judged from the participant's own ledger."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import ray
from playwright.sync_api import Page, expect, sync_playwright
from pydantic import BaseModel, SecretStr

from saga_actors import (
    NonRetryableError,
    Participant,
    RetryPolicy,
    Saga,
    SagaStatus,
    Step,
    StepContext,
    StepKind,
    Wait,
    action,
    compensation,
)
from saga_actors.ops.console import ConsoleSettings, build_app
from saga_actors.ops.console.settings import token_hash
from tests.cluster import free_port
from tests.conftest import RuntimeHarness, poll
from tests.console.browser import launch
from tests.console.server import ConsoleServer

pytestmark = pytest.mark.ray

TOKEN = "console-test-token"
CARD = "4111-1111-1111-1111"  # a SecretStr of every saga's input: never on any page
SCRIPTED = "<script>window.__pwned = 1</script> card declined"
ONCE = RetryPolicy(max_attempts=1)
TWICE = RetryPolicy(max_attempts=2, initial_backoff_s=0.05, max_backoff_s=0.1, jitter=0)
# where the screenshots go: a temp folder, or docs/ when SAGA_ACTORS_SCREENSHOTS is set
SHOTS = os.environ.get("SAGA_ACTORS_SCREENSHOTS")


class Booking(BaseModel):
    ref: str
    card: SecretStr
    decline: str | None = None  # charge fails for good with this message


class Approval(BaseModel):
    approved_by: str


class Desk(Participant):
    """Holds and charges; its release fails while it is broken (a STUCK saga)."""

    name = "console_desk"
    broken = False

    @action
    def hold(self, ctx: StepContext) -> dict:
        return {"held": ctx.data["ref"]}

    @compensation("hold")
    def release(self, ctx: StepContext) -> dict:
        if self.broken:
            raise RuntimeError("the desk is down")
        return {"released": ctx.action_output["held"]}

    @action
    def charge(self, ctx: StepContext) -> dict:
        if ctx.data.get("decline"):
            raise NonRetryableError(ctx.data["decline"])
        return {"charged": ctx.data["ref"]}

    def set_broken(self, broken: bool) -> None:
        self.broken = broken


def _steps(*names: str) -> list:
    made = {"hold": Step(name="hold", participant="console_desk", compensation="release",
                         retry=ONCE, compensation_retry=TWICE),
            "approve": Wait("approve", signal="approval", payload=Approval, timeout_s=300),
            "charge": Step(name="charge", participant="console_desk", retry=ONCE,
                           kind=StepKind.PIVOT)}
    return [made[n] for n in names]


QUICK = Saga(name="console_quick", input_model=Booking, steps=_steps("hold", "charge"))
APPROVED = Saga(name="console_approved", input_model=Booking,
                steps=_steps("hold", "approve", "charge"))


@pytest.fixture(scope="module")
def rig(ray_session, tmp_path_factory):
    """One runtime (hosted sagas), the desk, the console on it, and a browser."""
    h = RuntimeHarness(tmp_path_factory.mktemp("console"), placement="hosted", hosts=1)
    h.runtime.register(QUICK)
    h.runtime.register(APPROVED)
    desk = h.deploy(Desk)
    h.runtime.services()  # the supervisor and the registry run before any saga starts
    settings = ConsoleSettings(address=ray.get_runtime_context().gcs_address,
                               namespace=h.runtime.config.namespace,
                               token_sha256=token_hash(TOKEN), token_source="--token",
                               live_every_s=0.3, overview_every_s=0.3)
    shots = Path(SHOTS) if SHOTS else tmp_path_factory.mktemp("shots")
    with ConsoleServer(build_app(settings)) as server, sync_playwright() as pw:
        browser = launch(pw)
        yield {"h": h, "rt": h.runtime, "desk": desk, "url": server.url, "browser": browser,
               "shots": shots}
        browser.close()
    h.close()


@pytest.fixture
def page(rig):
    """A browser tab signed in with the console's token (every action is accepted)."""
    context = rig["browser"].new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.goto(f"{rig['url']}/login")
    tab.fill("input[name=token]", TOKEN)
    tab.click("form.login button")
    expect(tab.locator("h1")).to_have_text("Overview")
    yield tab
    context.close()


def _start(rig, saga: Saga, ref: str, **extra) -> str:
    return rig["h"].start(saga.name, {"ref": ref, "card": CARD, **extra})  # hosted


def _ledger(rig, saga_id: str) -> list[str]:
    """The desk's own record of the effects it applied for ``saga_id``."""
    return sorted(e["method"] for e in ray.get(rig["desk"].ledger.remote())
                  if e["saga_id"] == saga_id)


def _shot(rig, page: Page, name: str) -> None:
    page.screenshot(path=str(rig["shots"] / f"console-{name}.png"), full_page=True)


def test_the_overview_counts_change_as_sagas_run(rig, page):
    count = page.locator('b[data-count="COMPLETED"]')
    before = int(count.inner_text())
    ids = [_start(rig, QUICK, f"ov-{i}") for i in range(3)]
    for saga_id in ids:
        assert rig["rt"].wait(saga_id, timeout_s=60).status is SagaStatus.COMPLETED
    # no reload: the page refreshes itself
    expect(count).to_have_text(str(before + 3), timeout=15_000)
    expect(page.locator("table.by-type")).to_contain_text("console_quick")
    assert page.locator("svg.chart rect.start").count() >= 1
    _shot(rig, page, "overview")


def test_a_failed_saga_is_found_by_filter_and_its_compensation_shown(rig, page):
    saga_id = _start(rig, QUICK, "declined", decline=SCRIPTED)
    assert rig["rt"].wait(saga_id, timeout_s=60).status is SagaStatus.FAILED
    assert _ledger(rig, saga_id) == ["hold", "release"]
    page.goto(f"{rig['url']}/sagas")
    page.select_option("select[name=status]", "FAILED")
    page.fill("input[name=type]", "console_quick")
    page.click("form.filters button")
    rows = page.locator("table.sagas tbody tr")
    expect(rows.first).to_contain_text(saga_id)
    assert all(s == "FAILED" for s in page.locator("table.sagas [data-status]").all_inner_texts())
    _shot(rig, page, "list")
    page.click(f"a.saga-link:text-is('{saga_id}')")
    expect(page.locator("code.saga-id")).to_have_text(saga_id)
    expect(page.locator('dd[data-fact="status"]')).to_have_text("FAILED")
    # the timeline (the SVG `show --timeline` draws) and the steps table show the undo
    assert page.locator(".timeline svg").count() == 1
    expect(page.locator("table.steps")).to_contain_text("compensated")
    assert page.locator('.timeline svg g.compensation[data-lane="hold"]').count() >= 1
    # the error holding <script> is text on the page, and it never ran
    expect(page.locator('dd[data-fact="error"]')).to_contain_text("<script>window.__pwned")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert "<script>window.__pwned" not in page.content()
    _shot(rig, page, "saga")


def test_cancel_with_the_button_compensates_the_saga(rig, page):
    saga_id = _start(rig, APPROVED, "to-cancel")
    rt = rig["rt"]
    poll(lambda: rt.get(saga_id).current_step == "approve", what="the saga to wait")
    page.goto(f"{rig['url']}/sagas/{saga_id}")
    expect(page.locator('dd[data-fact="waiting for"]')).to_contain_text("approval")
    page.fill("form[data-action=cancel] input[name=reason]", "customer called")
    page.click("form[data-action=cancel] button")
    expect(page.locator("[data-flash=ok]")).to_contain_text("cancel requested")
    # live: the page follows the saga to its end by itself
    expect(page.locator('#live dd[data-fact="status"]')).to_have_text("FAILED", timeout=30_000)
    assert rt.wait(saga_id, timeout_s=30).status is SagaStatus.FAILED
    assert _ledger(rig, saga_id) == ["hold", "release"]


def test_a_signal_sent_from_the_page_lets_the_saga_go_on(rig, page):
    saga_id = _start(rig, APPROVED, "to-approve")
    rt = rig["rt"]
    poll(lambda: rt.get(saga_id).current_step == "approve", what="the saga to wait")
    page.goto(f"{rig['url']}/sagas/{saga_id}")
    form = page.locator("form[data-action=signal]")
    expect(form.locator("input[name=name]")).to_have_value("approval")  # what it waits for
    form.locator("textarea[name=data]").fill('{"approved_by": 7}')  # checked: the wait's model
    form.locator("button").click()
    expect(page.locator("[data-flash=error]")).to_contain_text("approved_by")
    assert rt.get(saga_id).status is not SagaStatus.COMPLETED
    form = page.locator("form[data-action=signal]")
    form.locator("textarea[name=data]").fill('{"approved_by": "ops"}')
    form.locator("button").click()
    expect(page.locator("[data-flash=ok]")).to_contain_text("signal 'approval' sent")
    expect(page.locator('#live dd[data-fact="status"]')).to_have_text("COMPLETED",
                                                                      timeout=30_000)
    assert _ledger(rig, saga_id) == ["charge", "hold"]


def test_a_stuck_saga_is_first_on_the_overview_and_retried_from_its_page(rig, page):
    ray.get(rig["desk"].set_broken.remote(True))
    try:
        saga_id = _start(rig, QUICK, "to-stick", decline="no funds")
        assert rig["rt"].wait(saga_id, timeout_s=60).status is SagaStatus.STUCK
    finally:
        ray.get(rig["desk"].set_broken.remote(False))
    page.goto(rig["url"])
    stuck = page.locator("section.stuck")
    expect(stuck).to_contain_text(saga_id)
    expect(stuck).to_contain_text("the desk is down")
    stuck.locator(f"a.saga-link:text-is('{saga_id}')").click()
    page.click("form[data-action=retry] button")
    expect(page.locator("[data-flash=ok]")).to_contain_text("retrying")
    expect(page.locator('#live dd[data-fact="status"]')).to_have_text("FAILED", timeout=30_000)
    assert _ledger(rig, saga_id) == ["hold", "release"]


def test_without_the_token_actions_are_refused_and_secrets_never_shown(rig, page):
    saga_id = _start(rig, APPROVED, "guarded")
    rt = rig["rt"]
    poll(lambda: rt.get(saga_id).current_step == "approve", what="the saga to wait")
    stranger = rig["browser"].new_context()
    try:
        anon = stranger.new_page()
        anon.goto(f"{rig['url']}/sagas/{saga_id}")
        expect(anon.locator("h1")).to_have_text("Sign in")  # reading needs the token too
        refused = stranger.request.post(f"{rig['url']}/act/cancel/{saga_id}",
                                        form={"confirm": "yes", "reason": "x"})
        assert refused.status == 401, refused.text()
        # a signed-in browser's form without its CSRF token is refused too
        forged = page.request.post(f"{rig['url']}/act/cancel/{saga_id}",
                                   form={"confirm": "yes", "reason": "x", "csrf": "forged"})
        assert forged.status == 403 and "CSRF" in forged.text()
    finally:
        stranger.close()
    assert rt.get(saga_id).status is SagaStatus.PENDING and _ledger(rig, saga_id) == ["hold"]
    # the input only on request, its SecretStr masked; in no page or answer in the clear
    page.goto(f"{rig['url']}/sagas/{saga_id}")
    assert "guarded" not in page.locator("main").inner_text()
    page.click("a[data-show-input]")
    shown = page.locator("pre.input-json").inner_text()
    assert '"ref": "guarded"' in shown and "**********" in shown and CARD not in shown
    for path in ("/", "/sagas", f"/sagas/{saga_id}", f"/sagas/{saga_id}?input=1",
                 f"/live/sagas/{saga_id}", "/live/overview", "/api/overview", "/api/sagas",
                 f"/api/sagas/{saga_id}"):
        answer = page.request.get(rig["url"] + path)
        assert answer.ok and CARD not in answer.text(), path
    rt.signal(saga_id, "approval", {"approved_by": "test"})


@pytest.fixture(scope="module", autouse=True)
def _screenshots_named_in_the_readme(rig):
    yield
    if SHOTS:  # the README shows these: make sure the run that made them made all three
        names = sorted(p.name for p in Path(SHOTS).glob("console-*.png"))
        assert names == ["console-list.png", "console-overview.png", "console-saga.png"]
    else:
        shutil.rmtree(rig["shots"], ignore_errors=True)


def test_saga_actors_console_serves_the_same_pages_from_its_own_process(rig, tmp_path):
    """The command a person runs on a laptop: its own process, attached by address."""
    saga_id = _start(rig, QUICK, "from-the-cli")
    assert rig["rt"].wait(saga_id, timeout_s=60).status is SagaStatus.COMPLETED
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "RAY_AUTH_MODE": "token", "SAGA_ACTORS_CONSOLE_TOKEN": TOKEN}
    cli = str(Path(sys.executable).parent / "saga-actors")
    nobody = subprocess.run([cli, "--namespace", rig["rt"].config.namespace, "console",
                             "--port", str(port)], capture_output=True, text=True, timeout=60,
                            env={**env, "SAGA_ACTORS_CONSOLE_TOKEN": "", "RAY_AUTH_TOKEN": "",
                                 "RAY_AUTH_TOKEN_PATH": str(tmp_path / "none"),
                                 "HOME": str(tmp_path)})
    assert nobody.returncode != 0 and "the console has no token" in nobody.stderr
    served = subprocess.Popen([cli, "--namespace", rig["rt"].config.namespace, "console",
                               "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        page = poll(lambda: _fetch(f"http://127.0.0.1:{port}/sagas/{saga_id}"), timeout_s=60,
                    every_s=0.2, what="saga-actors console to answer")
        assert "COMPLETED" in page and saga_id in page
        with rig["browser"].new_context() as context:
            tab = context.new_page()
            tab.goto(f"http://127.0.0.1:{port}/sagas/{saga_id}")
            expect(tab.locator("h1")).to_have_text("Sign in")
            tab.fill("input[name=token]", TOKEN)
            tab.click("form.login button")  # back to the saga's page, signed in
            expect(tab.locator('dd[data-fact="status"]')).to_have_text("COMPLETED")
    finally:
        served.terminate()
        served.wait(timeout=30)


def _fetch(url: str) -> str | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None
