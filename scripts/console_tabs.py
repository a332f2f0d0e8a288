"""Browser tabs on live saga pages, for scripts/bench.py --console: Debian's chromium,
driven by Playwright, in a process of its own (so the browser's work is not the bench
driver's).

    python scripts/console_tabs.py URL TOKEN SAGA_ID [SAGA_ID ...]

It signs in, opens one tab per saga on its page (each refreshes itself, as a person's
would), prints READY once every tab's live part has asked the console for news, and keeps
them open until its stdin closes; then it prints REFRESHES N (answers to those requests).
"""

from __future__ import annotations

import select
import shutil
import sys

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage",
        # a tab in the background refreshes as often as one in front
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows"]


def main(url: str, token: str, saga_ids: list[str]) -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("error: Debian's chromium is not installed (apt-get install chromium)",
              file=sys.stderr)
        return 2
    refreshes = 0

    def count(response) -> None:
        nonlocal refreshes
        if "/live/" in response.url and response.ok:
            refreshes += 1

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        context = browser.new_context()
        first = context.new_page()
        first.goto(f"{url}/login")
        first.fill("input[name=token]", token)
        first.click("form.login button")
        first.wait_for_selector("h1")
        tabs = [first, *(context.new_page() for _ in saga_ids[1:])]
        for tab, saga_id in zip(tabs, saga_ids, strict=True):
            tab.on("response", count)
            with tab.expect_request(lambda r: "/live/" in r.url, timeout=30_000):
                tab.goto(f"{url}/sagas/{saga_id}")  # (and its live part asks for news)
        print("READY", flush=True)
        while not select.select([sys.stdin], [], [], 0)[0]:
            first.wait_for_timeout(200)  # Playwright delivers its events meanwhile
        print(f"REFRESHES {refreshes}", flush=True)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
