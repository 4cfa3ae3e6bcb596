"""The website chat widget end to end: real headless Chromium, real Rasa and action servers.

Screenshots of every step go to results/screenshots/ (look at them when a test changes).
"""
import re

import pytest
import requests
from playwright.sync_api import expect

from clinic_core.clinic import load_clinic
from clinic_core.settings import CLINIC_FILE
from tests.browser.conftest import (
    DEMO_URL,
    INBOX_PASSWORD,
    INBOX_URL,
    INBOX_USERNAME,
    PHONE,
    REPLY_TIMEOUT,
    ROOT,
    STORAGE_KEY,
    Visit,
)

pytestmark = pytest.mark.browser

CLINIC = load_clinic(CLINIC_FILE)
FRAME = "not a clinician"  # in the frame message each session starts with (channels/handler.py)
SIDE_EFFECTS = "Most side effects are mild"
WHAT_IS = "Ketamine is an anesthetic"  # the answer to "what is ketamine"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"


def frames(visit):
    return visit.bot_messages.filter(has_text=FRAME).count()


def scrolled_to_newest(visit):
    return visit.page.evaluate(
        "() => { const log = document.querySelector('.cc-log');"
        " return log.scrollTop + log.clientHeight >= log.scrollHeight - 2; }")


def test_an_faq_question_is_answered_with_safe_markdown_and_a_typing_indicator(visit):
    visit.open_site()
    expect(visit.launcher).to_have_attribute("aria-expanded", "false")
    visit.open_widget()
    expect(visit.launcher).to_be_hidden()
    # The configured greeting is shown before anything is sent.
    expect(visit.bot_messages.first).to_contain_text("I can answer general questions")

    # Record whether the typing indicator shows while the reply is pending.
    visit.page.evaluate("""() => {
        const typing = document.querySelector('.cc-typing');
        window.__typingShown = false;
        new MutationObserver(() => { if (!typing.hidden) window.__typingShown = true; })
            .observe(typing, { attributes: true });
    }""")
    visit.ask("what are the side effects?", SIDE_EFFECTS)
    assert visit.page.evaluate("window.__typingShown") is True

    # The session's frame message comes first, then the answer, its bullet list as a real list.
    expect(visit.bot_messages.nth(1)).to_contain_text(FRAME)
    answer = visit.bot_messages.filter(has_text=SIDE_EFFECTS)
    expect(answer.locator("ul > li")).to_have_count(5)
    expect(answer.locator("li").first).to_have_text("Feeling detached or dissociated, with altered senses")
    # Nothing but the renderer's own tags in bot messages.
    tags = visit.page.evaluate(
        "() => [...new Set([...document.querySelectorAll('.cc-bot .cc-body *')].map(e => e.tagName))]")
    assert set(tags) <= {"P", "BR", "UL", "LI", "STRONG", "EM", "A"}, tags
    visit.screenshot("01-faq-answer")
    assert visit.console_errors == []


def test_a_quick_reply_button_sends_its_payload(visit):
    visit.open_site()
    visit.open_widget()
    visit.ask("are you a bot?", "I'm a virtual assistant")
    replies = visit.page.get_by_role("group", name="Suggested replies")
    expect(replies.get_by_role("button")).to_have_count(2)
    visit.screenshot("02-quick-replies")

    before = visit.bot_messages.count()
    replies.get_by_role("button", name="Keep asking questions").click()  # payload /ask_capabilities
    expect(visit.user_messages.last).to_have_text(re.compile("Keep asking questions"))
    visit.wait_reply(before, "Pick a topic or type your own question")
    # Only the newest message keeps its buttons: the capabilities menu.
    expect(visit.page.locator(".cc-replies")).to_have_count(1)
    menu = visit.page.get_by_role("group", name="Suggested replies")
    expect(menu.get_by_role("button")).to_have_count(6)
    visit.screenshot("03-capabilities-menu")

    before = visit.bot_messages.count()
    menu.get_by_role("button", name="Side effects").click()
    visit.wait_reply(before, SIDE_EFFECTS)
    visit.screenshot("04-quick-reply-answer")


def test_a_reload_and_another_page_continue_the_conversation_and_start_over_begins_a_new_one(visit):
    # All in one tab: the transcript is in this tab's sessionStorage, which a reload and another
    # page of the same site keep (a new tab does not: see the tests after this one).
    visit.open_site()
    visit.open_widget()
    visit.ask("how long does relief from ketamine last", "How long relief lasts varies")
    session = visit.session_id()
    shown = visit.bot_messages.count() + visit.user_messages.count()
    assert frames(visit) == 1

    visit.page.reload()
    visit.wait_connected()  # the panel was open, so it opens again and reconnects
    expect(visit.user_messages).to_have_count(1)
    expect(visit.user_messages.first).to_have_text(re.compile("how long does relief"))
    assert visit.bot_messages.count() + visit.user_messages.count() == shown
    assert visit.session_id() == session
    visit.screenshot("05-after-reload")

    # Same Rasa session: a new message gets its answer and no second frame message.
    visit.ask("thank you", "You're welcome")
    assert frames(visit) == 1

    visit.page.get_by_role("link", name="Your visit").click()
    visit.page.wait_for_url(f"{DEMO_URL}/visit.html")
    visit.wait_connected()
    expect(visit.user_messages).to_have_count(2)
    assert visit.session_id() == session
    assert scrolled_to_newest(visit)
    visit.screenshot("06-another-page")

    visit.page.get_by_role("button", name="Start over").click()
    expect(visit.user_messages).to_have_count(0)
    expect(visit.bot_messages).to_have_count(1)  # the greeting
    visit.wait_connected()
    assert visit.session_id() != session
    visit.ask("what is ketamine", FRAME)  # a new session starts with its own frame message
    assert frames(visit) == 1
    visit.screenshot("07-start-over")


def test_the_transcript_survives_a_reload_but_not_the_tab_being_closed(visit):
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    session = visit.session_id()

    visit.page.reload()  # the same tab: the conversation is still there
    visit.wait_connected()
    expect(visit.user_messages).to_have_count(1)
    expect(visit.user_messages.first).to_have_text(re.compile("what is ketamine"))
    assert visit.session_id() == session
    assert "what is ketamine" in visit.stored("sessionStorage")
    stored_for_good = visit.stored("localStorage")  # what outlives the tab: nothing of the conversation
    assert "what is ketamine" not in stored_for_good and session not in stored_for_good

    # The visitor closes the tab and comes back in a new one, same browser profile (same
    # localStorage): a fresh conversation, the panel closed, only the greeting.
    visit.page.close()
    visit.page = visit.context.new_page()
    visit.open_site()
    expect(visit.panel).to_be_hidden()
    visit.open_widget()
    expect(visit.user_messages).to_have_count(0)
    expect(visit.bot_messages).to_have_count(1)
    assert visit.session_id() != session
    assert "what is ketamine" not in visit.stored("sessionStorage") + visit.stored("localStorage")


def test_a_transcript_older_than_the_rasa_session_is_not_shown_and_is_deleted(visit):
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    session = visit.session_id()
    visit.page.evaluate(f"""() => {{
        const key = {STORAGE_KEY};
        const saved = JSON.parse(sessionStorage.getItem(key));
        saved.updated -= 61 * 60 * 1000;  // Rasa's session_expiration_time is 60 minutes
        sessionStorage.setItem(key, JSON.stringify(saved));
    }}""")
    visit.page.reload()
    expect(visit.launcher).to_be_visible()
    expect(visit.user_messages).to_have_count(0)
    stored = visit.stored("sessionStorage") + visit.stored("localStorage")
    assert "what is ketamine" not in stored and session not in stored


def test_a_transcript_an_earlier_widget_left_in_local_storage_is_not_shown_and_is_deleted(visit):
    """The widget used localStorage before sessionStorage became the default: a returning visitor's
    old conversation must not come back, nor stay in the browser."""
    visit.open_site()
    visit.page.evaluate(f"""() => localStorage.setItem({STORAGE_KEY}, JSON.stringify({{
        sessionId: 'left-by-an-earlier-widget', open: true, updated: Date.now(),
        messages: [{{from: 'user', text: 'an old question about my medication'}}]}}))""")
    visit.page.reload()
    expect(visit.launcher).to_be_visible()
    expect(visit.panel).to_be_hidden()
    visit.open_widget()
    expect(visit.user_messages).to_have_count(0)
    stored = visit.stored("sessionStorage") + visit.stored("localStorage")
    assert "old question" not in stored and "left-by-an-earlier-widget" not in stored


@pytest.mark.parametrize("remember", ["session", "local"])
def test_start_over_wipes_the_conversation_from_both_storages(visit, remember):
    if remember == "local":
        visit.remember_local()
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    session = visit.session_id()
    assert "what is ketamine" in visit.stored(f"{remember}Storage")
    # Whatever the set-up, a copy in the other storage goes too.
    other = "localStorage" if remember == "session" else "sessionStorage"
    visit.page.evaluate(f"() => {other}.setItem({STORAGE_KEY}, JSON.stringify({{sessionId: '{session}',"
                        " messages: [{from: 'user', text: 'what is ketamine'}], updated: Date.now()}))")
    visit.page.get_by_role("button", name="Start over").click()
    expect(visit.user_messages).to_have_count(0)
    visit.wait_connected()
    stored = visit.stored("sessionStorage") + visit.stored("localStorage")
    assert "what is ketamine" not in stored and session not in stored
    assert visit.session_id() != session


def test_a_new_tab_starts_its_own_conversation(visit):
    """sessionStorage is per tab: a second tab of the site does not show (or continue) the first
    tab's conversation. Clinics that want tabs to share it opt in with data-remember="local"."""
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    other = visit.context.new_page()  # same browser profile, a new tab
    other.goto(DEMO_URL + "/visit.html")
    expect(other.locator(".cc-launcher")).to_be_visible()
    expect(other.get_by_role("dialog")).to_be_hidden()  # the first tab's open panel is not this tab's
    other.locator(".cc-launcher").click()
    expect(other.locator(".cc-send")).to_be_enabled(timeout=REPLY_TIMEOUT)
    expect(other.locator(".cc-user")).to_have_count(0)
    assert visit.session_id(other) != visit.session_id()


def test_with_remember_local_two_tabs_of_the_site_show_one_conversation_without_duplicates(visit):
    # Only with data-remember="local": localStorage is shared by the site's tabs (by default each
    # tab has its own conversation, test_a_new_tab_starts_its_own_conversation).
    visit.remember_local()
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    assert "what is ketamine" in visit.stored("localStorage")
    assert "what is ketamine" not in visit.stored("sessionStorage")
    other = visit.context.new_page()  # same browser profile, so the same localStorage
    other.goto(DEMO_URL + "/visit.html")
    expect(other.locator(".cc-send")).to_be_enabled(timeout=REPLY_TIMEOUT)  # the panel was open
    expect(other.locator(".cc-msg")).to_have_count(visit.page.locator(".cc-msg").count())

    other.locator("#cc-input").fill("thank you")
    other.locator("#cc-input").press("Enter")
    for page in (other, visit.page):
        expect(page.locator(".cc-bot", has_text="You're welcome")).to_have_count(1, timeout=REPLY_TIMEOUT)
        expect(page.locator(".cc-user", has_text="thank you")).to_have_count(1)
    visit.page.wait_for_timeout(1000)  # any late duplicate would have arrived by now
    assert other.locator(".cc-msg").count() == visit.page.locator(".cc-msg").count()
    assert frames(visit) == 1


def test_a_crisis_message_gets_988(visit):
    visit.open_site()
    visit.open_widget()
    visit.ask("I want to kill myself", "988")
    crisis = visit.bot_messages.filter(has_text="Suicide & Crisis Lifeline")
    expect(crisis.locator("strong", has_text="988")).to_be_visible()
    expect(crisis.get_by_role("button", name="Yes, connect me with the team")).to_be_visible()
    visit.screenshot("08-crisis")


def test_a_booking_made_through_the_widget_reaches_the_staff_inbox(visit):
    visit.open_site()
    visit.open_widget()
    visit.ask("hi, i'd like to book a consultation", "What's your full name?")
    visit.ask("Dana Whitaker", "best phone number or email address")
    visit.ask("(503) 555-0147 or Dana.W@Example.com", "When is a good time for us to contact you?")
    visit.ask("weekday afternoons", "Is there anything you'd like help with")
    visit.ask("i'd like to know more about the side effects", "may contact you about your request")
    before = visit.bot_messages.count()
    visit.page.get_by_role("button", name="Yes, you may contact me").click()
    visit.wait_reply(before, "Here's what I'll send to our team")
    summary = visit.bot_messages.filter(has_text="Here's what I'll send to our team")
    expect(summary.locator("li")).to_have_count(4)
    expect(summary.locator("li").nth(1)).to_have_text("Contact: +15035550147, Dana.W@example.com")
    visit.screenshot("13-booking-summary")
    before = visit.bot_messages.count()
    visit.page.get_by_role("button", name="Yes, send it").click()
    visit.wait_reply(before, "Thank you, Dana Whitaker")
    visit.screenshot("14-booking-confirmed")

    # Staff sign in to the inbox in the same browser and see the request.
    visit.page.goto(f"{INBOX_URL}/login")
    visit.page.get_by_label("Username").fill(INBOX_USERNAME)
    visit.page.get_by_label("Password").fill(INBOX_PASSWORD)
    visit.page.get_by_label("Password").press("Enter")
    row = visit.page.get_by_role("row").filter(has_text="Dana Whitaker")
    expect(row).to_contain_text("+15035550147")
    expect(row).to_contain_text("weekday afternoons")
    visit.screenshot("15-staff-inbox")


def test_the_widget_is_usable_with_the_keyboard_and_announces_messages(visit):
    visit.open_site()
    page = visit.page
    # Tab through the page's links to the launcher.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('cc-launcher')"):
            break
    else:
        raise AssertionError("the launcher is not reachable with Tab")
    page.keyboard.press("Enter")
    visit.wait_connected()
    expect(page.locator("#cc-input")).to_be_focused()
    expect(page.get_by_label("Your question")).to_be_visible()
    expect(visit.log).to_have_attribute("aria-live", "polite")
    page.keyboard.type("what is ketamine")
    page.keyboard.press("Enter")
    visit.wait_reply(1, WHAT_IS)
    expect(visit.launcher).to_be_hidden()
    page.keyboard.press("Escape")
    expect(visit.panel).to_be_hidden()
    expect(visit.launcher).to_be_focused()
    expect(visit.launcher).to_have_attribute("aria-expanded", "false")


def test_no_accessibility_violations_in_the_open_widget(servers, browser):
    """axe-core (npm, served from disk) on the open widget: WCAG 2 A/AA, contrast included."""
    visit = Visit(browser, bypass_csp=True)  # axe is injected by the test, not by the page
    try:
        visit.open_site()
        visit.open_widget()
        visit.ask("are you a bot?", "I'm a virtual assistant")
        visit.page.add_script_tag(path=str(AXE))
        result = visit.page.evaluate("""async () => {
            const r = await axe.run('.cc-root', {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']});
            return r.violations.map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`);
        }""")
        assert result == []
    finally:
        visit.close()


def test_the_phone_width_layout(servers, browser):
    visit = Visit(browser, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        visit.open_site()
        box = visit.launcher.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        visit.screenshot("09-phone-closed")
        visit.open_widget()
        visit.ask("what happens during an infusion session", "A typical IV session")
        panel = visit.panel.bounding_box()
        assert (panel["x"], panel["y"]) == (0, 0)
        assert (panel["width"], panel["height"]) == (PHONE["width"], PHONE["height"])
        for part in (".cc-send", "#cc-input", ".cc-restart", ".cc-close"):
            part_box = visit.page.locator(part).bounding_box()
            assert part_box["x"] >= 0 and part_box["x"] + part_box["width"] <= PHONE["width"], part
            assert part_box["y"] + part_box["height"] <= PHONE["height"], part
        assert visit.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        visit.screenshot("10-phone-360")
    finally:
        visit.close()


def test_every_asset_comes_from_the_project_and_the_page_has_a_strict_csp(visit):
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    visit.page.goto(DEMO_URL + "/visit.html")
    visit.wait_connected()
    assert visit.foreign_requests() == []
    assert any("/socket.io/" in url for url in visit.requests)
    page_html = visit.page.content()
    assert "<script" in page_html and page_html.count("<script") == 1  # the widget's tag only
    policy = requests.get(DEMO_URL + "/", timeout=10).headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "font-src 'none'" in policy
    assert visit.console_errors == []


def test_connection_loss_shows_the_phone_number_and_reconnects(servers, visit):
    """Stops the real Rasa server, then starts it again (last: it takes a model load)."""
    visit.open_site()
    visit.open_widget()
    visit.ask("what is ketamine", WHAT_IS)
    rasa = next(service for service in servers.services if service.name == "rasa")

    servers.stop_one(rasa)
    notice = visit.page.get_by_role("alert")
    expect(notice).to_contain_text("can't reach the assistant", timeout=REPLY_TIMEOUT)
    expect(notice.get_by_role("link", name=CLINIC.phone)).to_have_attribute(
        "href", "tel:" + re.sub(r"[^0-9+]", "", CLINIC.phone))
    expect(visit.page.locator(".cc-send")).to_be_disabled()
    visit.screenshot("11-connection-lost")

    # A visitor who arrives while the server is down sees the same notice.
    newcomer = Visit(visit.context.browser)
    try:
        newcomer.open_site()
        newcomer.launcher.click()
        expect(newcomer.page.get_by_role("alert")).to_contain_text(CLINIC.phone, timeout=REPLY_TIMEOUT)
    finally:
        newcomer.close()

    servers.start_one(rasa)
    expect(notice).to_be_hidden(timeout=60_000)  # the widget reconnects by itself
    visit.wait_connected()
    visit.ask("what are the side effects?", SIDE_EFFECTS)
    visit.screenshot("12-reconnected")


def test_on_a_spanish_page_the_widget_speaks_spanish_with_the_clinics_own_greeting(visit):
    visit.spanish_page(greeting_es="¡Bienvenido a nuestra clínica! ¿En qué le podemos ayudar?")
    visit.open_site()
    expect(visit.launcher).to_have_text("¿Preguntas? Escríbanos")
    visit.launcher.click()
    expect(visit.page.get_by_role("dialog")).to_be_visible()
    expect(visit.page.locator(".cc-root")).to_have_attribute("lang", "es")
    expect(visit.page.get_by_role("log", name="Conversación")).to_be_visible()
    expect(visit.bot_messages.first).to_have_text(re.compile("¡Bienvenido a nuestra clínica!"))
    expect(visit.page.locator("#cc-input")).to_have_attribute("placeholder", "Escriba su pregunta…")
    expect(visit.page.get_by_role("button", name="Empezar de nuevo")).to_be_visible()
    expect(visit.page.get_by_role("button", name="Enviar")).to_be_visible()
    expect(visit.page.get_by_role("button", name="Cerrar el chat")).to_be_visible()
    visit.screenshot("14-spanish-page")


def test_on_a_spanish_page_the_clinics_english_greeting_gives_way_to_the_widgets_spanish_one(visit):
    visit.spanish_page()
    visit.open_site()
    visit.launcher.click()
    expect(visit.bot_messages.first).to_have_text(re.compile("Puedo responder preguntas generales"))
    expect(visit.bot_messages.filter(has_text="Hi!")).to_have_count(0)
