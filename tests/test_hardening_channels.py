"""Issue 13, items 2, 3, 4, 5, 7, 8 and 11, against the real trained model and real servers.

Each test names the item it proves. The fault tests stop the action server and send 100 kB
messages while another visitor chats.
"""
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import socketio
import yaml

from channels.settings import allowed_origins
from clinic_core.storage import HandoffStore
from scripts.services import Services, rasa_services
from tests.conftest import ACTION_PORT, MODEL, PORT_OFFSET, ROOT
from tests.socketio_visitor import Visitor
from tests.test_rest import CLINIC, DOMAIN, FAQ, FRAME, QUESTIONS, say, texts

RECOVERY_RASA_PORT, RECOVERY_ACTION_PORT = 5207 + PORT_OFFSET, 5257 + PORT_OFFSET
HUNDRED_KB = ("what are the side effects of ketamine? " * 2700)[:100_000]
TOO_LONG_REPLY = CLINIC.fill(DOMAIN["utter_message_too_long"][0]["text"])
CRISIS_REPLY = DOMAIN["utter_crisis"][0]["text"]
EVIL_ORIGIN = "https://evil.example"


def post(port, body, **kwargs):
    return requests.post(f"http://localhost:{port}/webhooks/rest/webhook", timeout=60, **kwargs, **(
        {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, (str, bytes))
        else {"json": body}))


@pytest.fixture(scope="module")
def port(stack):
    return stack.rasa_port


@pytest.fixture
def visitor(port):
    visitor = Visitor(port)
    yield visitor
    visitor.close()


# --- item 2: a length cap before NLU; request size limits; no starving other visitors ------
def test_a_100kb_rest_message_gets_the_polite_reply(port):
    assert texts(say(port, f"long-{uuid.uuid4()}", HUNDRED_KB))[-1] == TOO_LONG_REPLY


def test_a_100kb_socketio_message_gets_the_polite_reply(visitor):
    assert TOO_LONG_REPLY in visitor.say(HUNDRED_KB)


def test_a_message_at_the_cap_still_reaches_nlu(port):
    message = QUESTIONS["side_effects"] + " " * (2000 - len(QUESTIONS["side_effects"]))
    assert CLINIC.fill(FAQ["utter_faq/side_effects"][0]["text"]) in texts(say(port, f"cap-{uuid.uuid4()}", message))


def test_a_message_over_the_cap_inside_the_form_leaves_the_form_waiting(port):
    sender = f"form-long-{uuid.uuid4()}"
    assert DOMAIN["utter_ask_full_name"][0]["text"] in texts(say(port, sender, "i'd like to book a consultation"))
    assert texts(say(port, sender, HUNDRED_KB)) == [TOO_LONG_REPLY]
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in texts(say(port, sender, "Dana Whitaker"))


def test_a_body_over_the_request_limit_is_refused_before_it_is_read(port):
    response = post(port, {"sender": "huge", "message": "x" * 400_000})
    assert response.status_code == 413


def test_long_messages_do_not_slow_another_visitor(port, visitor):
    """Two clients send 100 kB messages nonstop (REST and socket.io) while a visitor asks
    questions; without the cap each one held the event loop for 14-17 s."""
    stop, flood_replies = threading.Event(), []

    def flood_rest():
        while not stop.is_set():
            flood_replies.append(texts(say(port, f"flood-{uuid.uuid4()}", HUNDRED_KB))[-1])

    def flood_socketio():
        flooder = Visitor(port)
        while not stop.is_set():
            flood_replies.append(flooder.say(HUNDRED_KB)[-1])
        flooder.close()

    floods = [threading.Thread(target=flood_rest), threading.Thread(target=flood_socketio)]
    for flood in floods:
        flood.start()
    try:
        visitor.say("good afternoon, anybody around to chat?")  # the frame and greeting: the session has started
        for topic in ("side_effects", "how_it_works", "infusion_session", "addiction_risk", "how_fast_it_works"):
            seconds, replies = visitor.timed_say(QUESTIONS[topic], timeout=30)
            assert seconds < 5, f"a reply took {seconds:.1f} s while 100 kB messages arrived"
            assert CLINIC.fill(FAQ[f"utter_faq/{topic}"][0]["text"]) in replies
    finally:
        stop.set()
        for flood in floods:
            flood.join(timeout=60)
    assert len(flood_replies) >= 4 and set(flood_replies) == {TOO_LONG_REPLY}


# --- item 3: the action server on loopback, every call authenticated ------------------------
def listening_addresses(port_number):
    """Local addresses with a socket listening on this TCP port (from /proc/net/tcp{,6})."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port_number:  # 0A: LISTEN
                addresses.add(address)
    return addresses


def test_the_action_server_listens_on_loopback_only(stack):
    assert listening_addresses(ACTION_PORT) == {"0100007F"}  # 127.0.0.1, little-endian hex


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ""}])
def test_the_action_server_refuses_calls_without_the_secret(stack, headers):
    action_server = f"http://localhost:{ACTION_PORT}"
    assert requests.get(f"{action_server}/actions", headers=headers, timeout=10).status_code == 401
    sender = f"forged-{uuid.uuid4()}"
    forged = {"next_action": "action_submit_booking", "sender_id": sender, "version": "3.6.21",
              "tracker": {"sender_id": sender, "slots": {"full_name": "Invented", "phone": "+15035550100",
                                                         "consent": True, "booking_confirmed": True},
                          "latest_message": {}, "events": [], "paused": False,
                          "active_loop": {}, "latest_action_name": "action_listen"},
              "domain": {}}
    response = requests.post(f"{action_server}/webhook", json=forged, headers=headers, timeout=10)
    assert response.status_code == 401
    assert [row for row in HandoffStore(stack.database_url).list_handoffs() if row["conversation_id"] == sender] == []
    assert requests.get(f"{action_server}/health", timeout=10).status_code == 200  # readiness needs no secret


def test_the_rasa_server_sends_the_secret(port):
    # The booking form's validation (validate_booking_form) runs on the action server, which
    # refuses calls without the secret: the form's next question means the call went through.
    sender = f"auth-{uuid.uuid4()}"
    say(port, sender, "i'd like to book a consultation")
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in texts(say(port, sender, "Jordan Ellis"))


# --- item 11: a crafted correction never stores a handoff without a phone or email ------------
def test_a_crafted_phone_correction_stores_no_handoff_without_contact_details(stack, port):
    sender = f"crafted-{uuid.uuid4()}"
    for message in ("i'd like to book a consultation", "Dana Whitaker", "(503) 555-0147", "weekday afternoons",
                    "/deny", "/affirm"):
        say(port, sender, message)
    replies = texts(say(port, sender, '/correct_booking_field{"booking_field":"phone"}'))
    # Read as the contact details: all cleared together, and the form asks for them again.
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in replies
    for message in ("/affirm", '/correct_booking_field{"booking_field":"consent"}', "/affirm"):
        say(port, sender, message)
    stored = [row for row in HandoffStore(stack.database_url).list_handoffs() if row["conversation_id"] == sender]
    assert stored == []


# --- item 6: no visitor details in the servers' logs -----------------------------------------
def test_the_servers_logs_carry_no_message_text_or_contact_details(stack, port):
    """A booking's details, a crisis message and a message over the cap, then the output of
    every process (Rasa, the action server, the sender, the inbox) at the log level `make run` uses."""
    sender = f"logs-{uuid.uuid4()}"
    for message in ("i'd like to book a consultation", "Dana Whitaker", "(503) 555-0147 or Dana.W@Example.com",
                    "weekday afternoons"):
        say(port, sender, message)
    say(port, f"logs-{uuid.uuid4()}", "i keep thinking about killing myself")
    say(port, f"logs-{uuid.uuid4()}", HUNDRED_KB)
    log = stack.log_path.read_text()
    assert all(f"[{name}] " in log for name in ("rasa", "actions", "sender", "inbox"))  # the log is theirs
    assert visitor_details_in(log) == []


def visitor_details_in(log):
    details = ("Dana Whitaker", "555-0147", "5035550147", "Dana.W@", "dana.w@", "weekday afternoons",
               "killing myself", "book a consultation", "what are the side effects of ketamine")
    return [detail for detail in details if detail.lower() in log.lower()]


# --- item 4: REST needs a string sender and message; socket.io session ids ------------------
@pytest.mark.parametrize("body, error", [
    ({"message": "what are the side effects?"}, "sender"),
    ({"sender": None, "message": "good afternoon, anybody around to chat?"}, "sender"),
    ({"sender": 12345, "message": "good afternoon, anybody around to chat?"}, "sender"),
    ({"sender": "", "message": "good afternoon, anybody around to chat?"}, "sender"),
    ({"sender": "x" * 129, "message": "good afternoon, anybody around to chat?"}, "sender"),
    ({"sender": "a b", "message": "good afternoon, anybody around to chat?"}, "sender"),
    ({"sender": "rest-ok"}, "message"),
    ({"sender": "rest-ok", "message": None}, "message"),
    ({"sender": "rest-ok", "message": 42}, "message"),            # item 8: was 200 []
    ({"sender": "rest-ok", "message": ["good afternoon, anybody around to chat?"]}, "message"),
    ({"sender": "rest-ok", "message": {"text": "good afternoon, anybody around to chat?"}}, "message"),
    ({"sender": "rest-ok", "message": "good afternoon, anybody around to chat?", "metadata": "x"}, "metadata"),
    ("", "JSON object"),                                           # item 8: was 500
    ("[]", "JSON object"),                                         # item 8: was 500
    ('[{"sender": "a", "message": "good afternoon, anybody around to chat?"}]', "JSON object"),
    ("not json", "JSON object"),
    ('"a string"', "JSON object"),
    ("null", "JSON object"),
])
def test_a_malformed_rest_request_gets_a_400_with_a_clear_json_error(port, body, error):
    response = post(port, body)
    assert response.status_code == 400
    assert error in response.json()["error"]


@pytest.mark.parametrize("claimed", ["default", "x" * 100_000, "0123456789abcdef0123456789abcdef", None, 42],
                         ids=["default", "100k-characters", "unsigned", "none", "number"])
def test_socketio_replaces_any_session_id_the_server_did_not_sign(port, claimed):
    visitor = Visitor(port, session_id=claimed)
    try:
        assert visitor.session_id != claimed and len(visitor.session_id) == 64
        assert visitor.say("good afternoon, anybody around to chat?")  # the new session works
    finally:
        visitor.close()


def test_another_client_cannot_write_to_or_read_a_visitors_session(port, visitor):
    attacker = Visitor(port, session_id="default")
    try:
        attacker.send("show me the booking summary", session_id=visitor.session_id)
        attacker.send("good afternoon, anybody around to chat?", session_id="default")
        assert attacker.replies_within(4) == [] and visitor.replies_within(1) == []
        assert FRAME in visitor.say("good afternoon, anybody around to chat?")
        assert attacker.replies_within(2) == []
    finally:
        attacker.close()


def test_a_visitor_keeps_their_signed_session_on_reconnect(port, visitor):
    visitor.say("good afternoon, anybody around to chat?")
    again = Visitor(port, session_id=visitor.session_id)  # a reload, or a second tab
    try:
        assert again.session_id == visitor.session_id
        replies = again.say(QUESTIONS["side_effects"])
        assert FRAME not in replies  # the same session
    finally:
        again.close()


def test_a_message_on_a_socket_without_a_session_is_ignored_and_the_server_stays_up(port):
    client = socketio.Client(reconnection=False)
    replies = []
    client.on("bot_uttered", replies.append)
    client.connect(f"http://localhost:{port}", transports=["polling"], wait_timeout=10)
    try:
        greeting = "good afternoon, anybody around to chat?"
        for data in ({"message": greeting, "session_id": "default"}, greeting, None, {"message": 5}, [greeting]):
            client.emit("user_uttered", data)
        time.sleep(2)
        assert replies == []
    finally:
        client.eio.disconnect(abort=True)
    assert texts(say(port, f"alive-{uuid.uuid4()}", "good afternoon, anybody around to chat?"))


# --- item 7: allowed origins from one setting ------------------------------------------------
def test_socketio_refuses_a_page_from_another_origin(port):
    with pytest.raises(socketio.exceptions.ConnectionError):
        Visitor(port, origin=EVIL_ORIGIN)


def test_socketio_accepts_the_clinic_site(port):
    visitor = Visitor(port, origin=allowed_origins()[0])
    try:
        assert visitor.say("good afternoon, anybody around to chat?")
    finally:
        visitor.close()


def test_rest_cors_allows_the_clinic_site_only(port):
    allowed = allowed_origins()[0]
    body = {"sender": f"cors-{uuid.uuid4()}", "message": "good afternoon, anybody around to chat?"}
    assert post(port, body, **{"headers": {"Origin": allowed}}).headers.get("Access-Control-Allow-Origin") == allowed
    assert "Access-Control-Allow-Origin" not in post(port, body, **{"headers": {"Origin": EVIL_ORIGIN}}).headers
    preflight = requests.options(f"http://localhost:{port}/webhooks/rest/webhook", timeout=10, headers={
        "Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


# --- item 8: broken text is cleaned before NLU ------------------------------------------------
@pytest.mark.parametrize("message", [
    "I want to kill myself\ud83d",              # half an emoji: a lone surrogate
    "\udc00I want to kill myself",
    "I want to kill\x00 myself\x1b[31m",         # control characters
    "I want to k\u200bill my\u200dself",         # zero-width characters inside the words
])
def test_broken_text_still_gets_the_crisis_reply_over_rest(port, message):
    assert CRISIS_REPLY in texts(say(port, f"broken-{uuid.uuid4()}", message))


def test_broken_text_still_gets_the_crisis_reply_over_socketio(visitor):
    assert CRISIS_REPLY in visitor.say("I want to kill myself\ud83d")


# --- item 5: with the action server down, the clinic's contacts and a session that starts ------
def test_domain_fallback_clinic_details_match_the_clinic_file():
    slots = yaml.safe_load((ROOT / "domain.yml").read_text())["slots"]
    assert {name: slots[name]["initial_value"] for name in CLINIC.slots()} == CLINIC.slots()


def test_no_response_needs_the_action_server_for_the_clinic_details():
    """Every clinic_* placeholder in every response has a value before any action has run."""
    slots = yaml.safe_load((ROOT / "domain.yml").read_text())["slots"]
    for name, variants in {**DOMAIN, **FAQ}.items():
        for placeholder in re.findall(r"{(clinic_\w+)}", variants[0]["text"]):
            assert slots[placeholder].get("initial_value"), f"{name}: {placeholder} would read None"


@pytest.fixture(scope="module")
def rasa_then_action_server(tmp_path_factory):
    """The Rasa server alone; the test starts the action server later."""
    actions, rasa = rasa_services(str(MODEL), RECOVERY_RASA_PORT, RECOVERY_ACTION_PORT,
                                  str(tmp_path_factory.mktemp("recovery") / "tracker.db"))
    group = Services([actions, rasa])
    try:
        group.start_one(rasa)
        yield group, actions
    finally:
        group.stop()


def test_with_the_action_server_down_sessions_start_and_questions_are_answered(rasa_then_action_server):
    group, actions = rasa_then_action_server
    side_effects = CLINIC.fill(FAQ["utter_faq/side_effects"][0]["text"])
    cost = CLINIC.fill(DOMAIN["utter_ask_cost"][0]["text"])
    # The session starts in the Rasa server (channels/handler.py): the first message, with the
    # clinic's details from clinic.yml, then the answer.
    sender = f"outage-{uuid.uuid4()}"
    first = texts(say(RECOVERY_RASA_PORT, sender, QUESTIONS["side_effects"]))
    assert first[0] == FRAME and side_effects in first
    assert cost in texts(say(RECOVERY_RASA_PORT, sender, "how much does it cost"))  # the phone and email
    assert CLINIC.phone in cost and CLINIC.email in cost
    reply = " ".join(texts(say(RECOVERY_RASA_PORT, sender, "blorp znak")))  # out of scope, or not understood
    assert "None" not in reply and CLINIC.phone in reply
    in_crisis = f"outage-{uuid.uuid4()}"
    assert CRISIS_REPLY in texts(say(RECOVERY_RASA_PORT, in_crisis, "i keep thinking about killing myself"))
    after_crisis = texts(say(RECOVERY_RASA_PORT, in_crisis, QUESTIONS["side_effects"]))
    assert side_effects in after_crisis and DOMAIN["utter_crisis_line"][0]["text"] in after_crisis
    visitor = Visitor(RECOVERY_RASA_PORT)
    try:
        assert side_effects in visitor.say(QUESTIONS["side_effects"])
    finally:
        visitor.close()

    group.start_one(actions)  # back: the same sessions go on
    replies = texts(say(RECOVERY_RASA_PORT, sender, "how much does it cost"))
    assert cost in replies and FRAME not in replies
    resumed = texts(say(RECOVERY_RASA_PORT, in_crisis, QUESTIONS["side_effects"]))
    assert side_effects in resumed and DOMAIN["utter_crisis_line"][0]["text"] in resumed

    group.stop_one(actions)  # it stops again, in the middle of conversations
    assert cost in texts(say(RECOVERY_RASA_PORT, sender, "how much does it cost"))
    assert side_effects in texts(say(RECOVERY_RASA_PORT, f"outage-{uuid.uuid4()}", QUESTIONS["side_effects"]))


@pytest.mark.parametrize("message", ["", " ", "\n\t", "\u3000", "\x00\x07", "\u200b\ufeff", "\ud83d"])
def test_a_message_with_nothing_left_to_read_gets_the_rephrase_reply(port, message):
    # DIET fails on a message without tokens: Rasa's REST channel answered `200 []`.
    assert CLINIC.fill(DOMAIN["utter_default"][0]["text"]) in texts(say(port, f"blank-{uuid.uuid4()}", message))
