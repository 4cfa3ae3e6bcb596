"""Staff notifications through the outbox, against a real SMTP server and a real HTTP receiver."""
import dataclasses
import json
import re
from datetime import timedelta

import pytest

from clinic_core.notifications import render_notifications
from clinic_core.settings import SettingsError, load_settings
from clinic_core.storage import HandoffRequest, HandoffStore, utcnow
from staff.sender import queue_new_notifications, retry_delay, run_once
from tests.conftest import handoff_with_notifications
from tests.local_servers import SmtpServer, WebhookReceiver, free_port

REQUEST = HandoffRequest(
    full_name="Dana <b>Whitaker</b>", phone="+15035550147", email="dana@example.com",
    preferred_time="weekday afternoons", reason="wants to know about side effects", consent=True,
    conversation_id="visitor-7", visitor_messages=["does it make you dizzy?", "Dana <b>Whitaker</b>"],
)
# Everything that says who the visitor is or what they wrote, in any form a notification could carry it.
VISITOR_DETAILS = ("Dana", "Whitaker", "+15035550147", "5035550147", "555-0147", "dana@example.com",
                   "wants to know about side effects", "side effects", "dizzy")


def visitor_details_in(text):
    return [detail for detail in VISITOR_DETAILS if detail.lower() in text.lower()]


@pytest.fixture
def smtp():
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def settings_for(tmp_path, smtp_port=None, webhook_url=None, **extra):
    environ = {"DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}",
               "STAFF_INBOX_URL": "http://inbox.test:8000", "OUTBOX_RETRY_BASE_SECONDS": "5", **extra}
    if smtp_port:
        environ.update(STAFF_EMAIL="team@clinic.test", SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    if webhook_url:
        environ["STAFF_WEBHOOK_URL"] = webhook_url
    return load_settings(environ)


def new_handoff(settings):
    store = HandoffStore(settings.database_url)
    handoff_id = store.create_handoff(REQUEST)
    queue_new_notifications(store, settings)  # as the sender does first
    return store, handoff_id


def test_by_default_the_email_says_only_that_a_request_arrived_with_its_id_time_and_link(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp_port=smtp.port)
    store, handoff_id = new_handoff(settings)
    assert run_once(store, settings) == 1
    [(recipients, message)] = smtp.mailbox.messages
    assert recipients == ["team@clinic.test"]
    assert message["Subject"] == f"New booking request #{handoff_id}"
    body = message.get_payload()
    for expected in (f"#{handoff_id}", "Best time to contact: weekday afternoons",
                     f"http://inbox.test:8000/handoffs/{handoff_id}"):
        assert expected in body
    # The whole message as it reached the SMTP server: headers and body.
    assert visitor_details_in(message.as_string()) == []
    assert store.notifications()[0]["status"] == "sent"


def spanish_handoff(settings):
    store = HandoffStore(settings.database_url)
    handoff_id = store.create_handoff(dataclasses.replace(REQUEST, language="es"))
    queue_new_notifications(store, settings)
    return store, handoff_id


@pytest.mark.parametrize("details", ["false", "true"])
def test_every_email_says_when_the_visitor_prefers_spanish(tmp_path, smtp, details):
    settings = settings_for(tmp_path, smtp_port=smtp.port, NOTIFY_EMAIL_INCLUDE_DETAILS=details)
    store, handoff_id = spanish_handoff(settings)
    assert run_once(store, settings) == 1
    [(_, message)] = smtp.mailbox.messages
    assert message["Subject"].startswith(f"New booking request #{handoff_id} (prefers Spanish)")
    assert "Language: prefers Spanish" in message.get_payload()


@pytest.mark.parametrize("details", ["false", "true"])
def test_every_webhook_message_says_when_the_visitor_prefers_spanish(tmp_path, webhook, details):
    settings = settings_for(tmp_path, webhook_url=webhook.url, NOTIFY_WEBHOOK_INCLUDE_DETAILS=details)
    store, _ = spanish_handoff(settings)
    assert run_once(store, settings) == 1
    [(_, payload)] = webhook.received
    assert "Language: prefers Spanish" in payload["text"]


def test_an_english_visitors_notification_says_english(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp_port=smtp.port)
    store, handoff_id = new_handoff(settings)
    run_once(store, settings)
    [(_, message)] = smtp.mailbox.messages
    assert message["Subject"] == f"New booking request #{handoff_id}"
    assert "Language: English" in message.get_payload() and "Spanish" not in message.as_string()


def test_with_email_details_on_the_email_carries_everything_staff_need(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp_port=smtp.port, NOTIFY_EMAIL_INCLUDE_DETAILS="true")
    store, handoff_id = new_handoff(settings)
    assert run_once(store, settings) == 1
    [(_, message)] = smtp.mailbox.messages
    assert message["Subject"] == f"New booking request #{handoff_id}: Dana <b>Whitaker</b>"
    body = message.get_payload()
    for expected in ("Dana <b>Whitaker</b>", "+15035550147", "dana@example.com", "weekday afternoons",
                     "wants to know about side effects", "does it make you dizzy?",
                     f"http://inbox.test:8000/handoffs/{handoff_id}"):
        assert expected in body


def test_by_default_the_webhook_says_only_that_a_request_arrived_with_its_id_time_and_link(tmp_path, webhook):
    settings = settings_for(tmp_path, webhook_url=webhook.url)
    store, handoff_id = new_handoff(settings)
    assert run_once(store, settings) == 1
    [(content_type, payload)] = webhook.received
    assert content_type == "application/json"
    assert set(payload) == {"text"}
    assert f"*New booking request #{handoff_id}*" in payload["text"]
    assert "Best time to contact: weekday afternoons" in payload["text"]
    assert f"<http://inbox.test:8000/handoffs/{handoff_id}|Open in the staff inbox>" in payload["text"]
    assert visitor_details_in(json.dumps(payload, ensure_ascii=False)) == []


def test_with_webhook_details_on_the_webhook_gets_them_in_slack_format(tmp_path, webhook):
    settings = settings_for(tmp_path, webhook_url=webhook.url, NOTIFY_WEBHOOK_INCLUDE_DETAILS="yes")
    store, handoff_id = new_handoff(settings)
    assert run_once(store, settings) == 1
    [(_, payload)] = webhook.received
    assert f"*New booking request #{handoff_id}:*" in payload["text"]
    for expected in ("+15035550147", "dana@example.com", "wants to know about side effects",
                     "does it make you dizzy?"):
        assert expected in payload["text"]
    # What the visitor typed cannot inject Slack markup or links.
    assert "Dana &lt;b&gt;Whitaker&lt;/b&gt;" in payload["text"] and "<b>" not in payload["text"]
    assert f"<http://inbox.test:8000/handoffs/{handoff_id}|Open in the staff inbox>" in payload["text"]


def test_the_time_a_visitor_typed_cannot_inject_slack_markup_in_the_minimal_webhook(tmp_path, webhook):
    settings = settings_for(tmp_path, webhook_url=webhook.url)
    store = HandoffStore(settings.database_url)
    request = HandoffRequest(full_name="Sam", phone="+15035550100", email=None, preferred_time="<!channel> & <x|y>",
                             reason=None, consent=True, conversation_id="visitor-8", visitor_messages=[])
    handoff_with_notifications(store, request, lambda id_, saved: render_notifications(id_, saved, settings))
    assert run_once(store, settings) == 1
    [(_, payload)] = webhook.received
    assert "Best time to contact: &lt;!channel&gt; &amp; &lt;x|y&gt;" in payload["text"]


@pytest.mark.parametrize("email_details, webhook_details", [("true", "false"), ("false", "true")])
def test_each_channel_includes_details_only_when_its_own_setting_is_on(tmp_path, smtp, webhook,
                                                                       email_details, webhook_details):
    settings = settings_for(tmp_path, smtp_port=smtp.port, webhook_url=webhook.url,
                            NOTIFY_EMAIL_INCLUDE_DETAILS=email_details,
                            NOTIFY_WEBHOOK_INCLUDE_DETAILS=webhook_details)
    store, _ = new_handoff(settings)
    assert run_once(store, settings) == 2
    [(_, email)] = smtp.mailbox.messages
    [(_, payload)] = webhook.received
    email_has = bool(visitor_details_in(email.as_string()))
    webhook_has = bool(visitor_details_in(json.dumps(payload, ensure_ascii=False)))
    assert (email_has, webhook_has) == (email_details == "true", webhook_details == "true")


def test_the_outbox_keeps_no_visitor_details_when_the_notifications_carry_none(tmp_path, smtp, webhook):
    settings = settings_for(tmp_path, smtp_port=smtp.port, webhook_url=webhook.url)
    store, _ = new_handoff(settings)
    for row in store.notifications():
        assert visitor_details_in(row["subject"] + row["body"]) == []


@pytest.mark.parametrize("name", ["NOTIFY_EMAIL_INCLUDE_DETAILS", "NOTIFY_WEBHOOK_INCLUDE_DETAILS"])
def test_the_details_settings_are_off_by_default_and_validated(tmp_path, name):
    assert getattr(settings_for(tmp_path), name.lower()) is False
    assert getattr(settings_for(tmp_path, **{name: "on"}), name.lower()) is True
    with pytest.raises(SettingsError, match=re.escape(name)):
        settings_for(tmp_path, **{name: "sometimes"})


def test_both_channels_are_sent_once_each(tmp_path, smtp, webhook):
    settings = settings_for(tmp_path, smtp_port=smtp.port, webhook_url=webhook.url)
    store, _ = new_handoff(settings)
    assert run_once(store, settings) == 2
    assert run_once(store, settings) == 0
    assert len(smtp.mailbox.messages) == 1 and len(webhook.received) == 1


def test_an_smtp_outage_loses_nothing_and_delivers_exactly_once(tmp_path):
    smtp = SmtpServer(free_port())  # not started: the server is down
    settings = settings_for(tmp_path, smtp_port=smtp.port)
    store, handoff_id = new_handoff(settings)
    start = utcnow()

    assert run_once(store, settings, now=start) == 0
    [pending] = store.notifications()
    assert store.get_handoff(handoff_id) is not None  # the handoff itself is stored
    assert (pending["status"], pending["attempts"]) == ("pending", 1)
    assert "ConnectionRefusedError" in pending["last_error"]
    assert store.undelivered_counts() == (1, 1, 0)  # pending, failed an attempt, given up
    assert pending["next_attempt_at"] == start + timedelta(seconds=5)

    # Still down at the next try: the wait doubles.
    assert run_once(store, settings, now=start + timedelta(seconds=5)) == 0
    assert store.notifications()[0]["next_attempt_at"] == start + timedelta(seconds=15)

    smtp.start()
    try:
        assert run_once(store, settings, now=start + timedelta(seconds=10)) == 0  # not due yet
        assert run_once(store, settings, now=start + timedelta(seconds=15)) == 1
        assert run_once(store, settings, now=start + timedelta(hours=1)) == 0
        assert len(smtp.mailbox.messages) == 1
        [sent] = store.notifications()
        assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 3, None)
        assert store.undelivered_counts() == (0, 0, 0)
    finally:
        smtp.stop()


def test_a_webhook_error_status_is_retried(tmp_path):
    receiver = WebhookReceiver(status=503)
    try:
        settings = settings_for(tmp_path, webhook_url=receiver.url)
        store, _ = new_handoff(settings)
        assert run_once(store, settings) == 0
        assert store.notifications()[0]["status"] == "pending"
        receiver.status = 200
        assert run_once(store, settings, now=utcnow() + timedelta(minutes=1)) == 1
        assert len(receiver.received) == 2  # the failed attempt and the delivered one
        assert store.notifications()[0]["status"] == "sent"
    finally:
        receiver.stop()


def test_a_claimed_notification_is_not_sent_by_a_second_sender(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp_port=smtp.port)
    store, _ = new_handoff(settings)
    now = utcnow()
    assert len(store.claim_notifications(now, timedelta(minutes=2), limit=10)) == 1
    assert store.claim_notifications(now, timedelta(minutes=2), limit=10) == []
    # A sender that died holding the claim: after the lease the row is due again.
    assert len(store.claim_notifications(now + timedelta(minutes=3), timedelta(minutes=2), limit=10)) == 1


def test_with_no_channel_on_nothing_is_queued(tmp_path):
    settings = settings_for(tmp_path)
    store, _ = new_handoff(settings)
    assert store.notifications() == []


def test_retry_delay_doubles_up_to_the_cap(tmp_path):
    settings = settings_for(tmp_path, OUTBOX_RETRY_MAX_SECONDS="60")
    assert [retry_delay(n, settings).total_seconds() for n in range(6)] == [5, 10, 20, 40, 60, 60]
