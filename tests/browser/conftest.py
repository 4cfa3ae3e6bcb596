"""Real servers and real headless Chromium for the widget's end-to-end tests.

Ports kept apart from `make run` (5005/5055/8000/8080) and the REST tests (52xx): Rasa 5505,
actions 5555, demo page 8180, staff inbox 8181, all moved by TEST_PORT_OFFSET. Chromium is Debian's
(`make chromium`), driven by Playwright.
"""
import json
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from scripts.services import Services, demo_site_service, rasa_services, staff_services
from tests.conftest import INBOX_PASSWORD, INBOX_USERNAME, MODEL, PORT_OFFSET, ROOT, add_inbox_account

RASA_PORT, ACTION_PORT, DEMO_PORT, INBOX_PORT = (port + PORT_OFFSET for port in (5505, 5555, 8180, 8181))
INBOX_URL = f"http://localhost:{INBOX_PORT}"
ASSISTANT_URL = f"http://localhost:{RASA_PORT}"
DEMO_URL = f"http://localhost:{DEMO_PORT}"
ALLOWED_HOSTS = {f"localhost:{RASA_PORT}", f"localhost:{DEMO_PORT}"}
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium's background connections fail (no internet here) and slow it down.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = ROOT / "results" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
REPLY_TIMEOUT = 20_000  # ms


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """Every process `make run` starts, on their own ports and a fresh database (no staff
    email or webhook: handoffs reach the staff inbox)."""
    assert MODEL.is_file(), "run `make train` first"
    assert (ROOT / "build/web/widget/clinic-chat.js").is_file(), "run `make widget` first"
    directory = tmp_path_factory.mktemp("browser")
    env = {"DATABASE_URL": f"sqlite:///{directory / 'handoffs.db'}", "STAFF_EMAIL": "", "SMTP_HOST": "",
           "STAFF_WEBHOOK_URL": "", "STAFF_INBOX_URL": INBOX_URL, "TRACKER_DB": str(directory / "tracker.db"),
           "ALLOWED_ORIGINS": f"http://localhost:{DEMO_PORT}"}  # the demo page's origin
    add_inbox_account(env["DATABASE_URL"], INBOX_USERNAME, INBOX_PASSWORD)
    services = Services(
        rasa_services(str(MODEL), RASA_PORT, ACTION_PORT, str(directory / "tracker.db"), env)
        + staff_services(INBOX_PORT, env)
        + [demo_site_service(DEMO_PORT, ASSISTANT_URL)]
    )
    with services:
        yield services


@pytest.fixture(scope="session")
def browser():
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: run `make chromium`"
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as downloads:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, downloads_path=downloads,
        )
        yield browser
        browser.close()


# The widget's storage key (clinic-chat:<data-server-url>), read from the page's own script tag.
STORAGE_KEY = "'clinic-chat:' + document.querySelector('script[data-server-url]').dataset.serverUrl"


class Visit:
    """One visitor: a fresh browser profile (its own localStorage and sessionStorage) on the demo site."""

    def __init__(self, browser, viewport=DESKTOP, **context_options):
        self.context = browser.new_context(viewport=viewport, **context_options)
        self.page: Page = self.context.new_page()
        self.requests = []
        self.console_errors = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("websocket", lambda socket: self.requests.append(socket.url))
        self.page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))

    # --- the widget -------------------------------------------------------------------
    @property
    def launcher(self):
        return self.page.locator(".cc-launcher")

    @property
    def panel(self):
        return self.page.get_by_role("dialog")

    @property
    def log(self):
        return self.page.get_by_role("log", name="Conversation")

    @property
    def bot_messages(self):
        return self.page.locator(".cc-msg.cc-bot")

    @property
    def user_messages(self):
        return self.page.locator(".cc-msg.cc-user")

    def remember_local(self):
        """The demo pages as a clinic that opts in to localStorage serves them: data-remember="local"
        on the widget's script tag, in every page and tab of this visit. Set once the page is parsed
        and before the deferred widget script runs (a page fulfilled by Playwright's routing would
        lose its local address, and Chromium would then block its connections to the assistant)."""
        self._before_the_widget_runs("tag.dataset.remember = 'local';")

    def spanish_page(self, greeting_es=None):
        """The demo pages as a clinic serves their Spanish version: <html lang="es">, and the
        clinic's own Spanish greeting on the widget's tag if given."""
        greeting = f"tag.dataset.greetingEs = {json.dumps(greeting_es)};" if greeting_es else ""
        self._before_the_widget_runs(f"document.documentElement.lang = 'es'; {greeting}")

    def _before_the_widget_runs(self, statements):
        """Runs statements (with `tag`, the widget's script tag) in every page of this visit, once
        the page is parsed and before the deferred widget script runs."""
        self.context.add_init_script(f"""document.addEventListener('readystatechange', () => {{
            if (document.readyState !== 'interactive') return;
            const tag = document.querySelector('script[data-server-url]');
            if (tag) {{ {statements} }}
        }});""")

    def open_site(self, path="/"):
        self.page.goto(DEMO_URL + path)
        expect(self.launcher).to_be_visible()

    def open_widget(self):
        self.launcher.click()
        self.wait_connected()

    def wait_connected(self):
        expect(self.panel).to_be_visible()
        expect(self.page.locator(".cc-send")).to_be_enabled(timeout=REPLY_TIMEOUT)

    def ask(self, text, expect_in_reply=None):
        """Types a message and sends it with Enter; waits for a bot reply containing the text."""
        before = self.bot_messages.count()
        self.page.locator("#cc-input").fill(text)
        self.page.locator("#cc-input").press("Enter")
        expect(self.user_messages.last).to_have_text(re.compile(re.escape(text)))
        self.wait_reply(before, expect_in_reply)

    def wait_reply(self, before, expect_in_reply=None):
        expect(self.bot_messages).not_to_have_count(before, timeout=REPLY_TIMEOUT)
        if expect_in_reply:
            expect(self.log).to_contain_text(expect_in_reply, timeout=REPLY_TIMEOUT)
        expect(self.page.locator(".cc-typing")).to_be_hidden(timeout=REPLY_TIMEOUT)
        self.wait_settled()

    def wait_settled(self, quiet_ms=600):
        """Rasa sends a turn's messages back to back: wait until none has come for quiet_ms."""
        count = self.bot_messages.count()
        while True:
            self.page.wait_for_timeout(quiet_ms)
            now = self.bot_messages.count()
            if now == count:
                return
            count = now

    def session_id(self, page=None):
        """The conversation's session id, from whichever storage the widget keeps it in."""
        return (page or self.page).evaluate(
            f"() => JSON.parse(sessionStorage.getItem({STORAGE_KEY}) || localStorage.getItem({STORAGE_KEY}))"
            ".sessionId")

    def stored(self, area, page=None):
        """Everything in the page's sessionStorage or localStorage, as one string."""
        return (page or self.page).evaluate(f"() => JSON.stringify(Object.entries({area}))")

    def screenshot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(300)  # let the typing dots and scrolling settle
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def foreign_requests(self):
        return [url for url in self.requests if urlsplit(url).netloc not in ALLOWED_HOSTS]

    def close(self):
        self.context.close()


@pytest.fixture
def visit(servers, browser):
    visit = Visit(browser)
    yield visit
    visit.close()
