"""The outbox: one event per handoff, rendered by the sender per its own settings; notifications
claimed in batches. Real SQLite files and a real local HTTP receiver."""
import threading
from datetime import timedelta

from clinic_core.settings import load_settings
from clinic_core.storage import HandoffRequest, HandoffStore, Notification, utcnow
from staff.sender import queue_new_notifications, run_once
from tests.local_servers import WebhookReceiver

REQUEST = HandoffRequest("Ann Lee", "mornings", True, "visitor-1", phone="+15035550147")


def settings_for(tmp_path, **environ):
    return load_settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}", **environ})


def test_the_action_servers_write_is_one_event_and_no_rendered_notification(tmp_path):
    store = HandoffStore(settings_for(tmp_path).database_url)
    handoff_id = store.create_handoff(REQUEST)
    assert store.notifications() == [] and store.unqueued_event_count() == 1
    assert store.get_handoff(handoff_id)["notifications_to_queue"] is True


def test_the_sender_renders_per_its_own_settings_once(tmp_path):
    receiver = WebhookReceiver()
    try:
        settings = settings_for(tmp_path, STAFF_WEBHOOK_URL=receiver.url)
        store = HandoffStore(settings.database_url)
        handoff_id = store.create_handoff(REQUEST)
        assert queue_new_notifications(store, settings) == 1
        assert queue_new_notifications(store, settings) == 0  # a second sender finds nothing to do
        assert run_once(store, settings) == 1
        [(_, payload)] = receiver.received
        assert f"#{handoff_id}" in payload["text"] and "Ann" not in payload["text"]
        assert store.get_handoff(handoff_id)["notifications_to_queue"] is False
    finally:
        receiver.stop()


def test_a_sender_with_no_channel_on_marks_the_event_done_and_queues_nothing(tmp_path):
    settings = settings_for(tmp_path)
    store = HandoffStore(settings.database_url)
    store.create_handoff(REQUEST)
    assert run_once(store, settings) == 0
    assert store.unqueued_event_count() == 0 and store.notifications() == []


def test_senders_racing_for_events_queue_each_once(tmp_path):
    receiver = WebhookReceiver()
    try:
        settings = settings_for(tmp_path, STAFF_WEBHOOK_URL=receiver.url)
        store = HandoffStore(settings.database_url)
        for _ in range(30):
            store.create_handoff(REQUEST)
        senders = [HandoffStore(settings.database_url) for _ in range(4)]  # one engine each, like processes
        threads = [threading.Thread(target=lambda s=s: _until_done(s, settings)) for s in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(n["handoff_id"] for n in store.notifications()) == list(range(1, 31))
        assert len(receiver.idempotency_keys) == len(set(receiver.idempotency_keys)) == 30
    finally:
        receiver.stop()


def _until_done(store: HandoffStore, settings) -> None:
    from clinic_core.storage import StorageUnavailable
    for _ in range(200):  # SQLite may say "locked" to a loser: it tries again, as the sender does
        try:
            run_once(store, settings)
            if store.unqueued_event_count() == 0 and store.undelivered_counts()[0] == 0:
                return
        except StorageUnavailable:
            pass


def test_a_claimed_batch_is_held_until_released(tmp_path):
    store = HandoffStore(settings_for(tmp_path).database_url)
    for _ in range(3):
        store.create_handoff(REQUEST)
        store.queue_notifications(lambda *_: [Notification("webhook", "s", "b")])
    now, lease = utcnow(), timedelta(minutes=2)
    first = store.claim_notifications(now, lease, limit=2)
    assert [n["id"] for n in first] == [1, 2]
    assert [n["id"] for n in store.claim_notifications(now, lease, limit=10)] == [3]
    assert store.claim_notifications(now, lease, limit=10) == []
    store.release([1, 2], first[0]["claimed_by"])
    assert [n["id"] for n in store.claim_notifications(now, lease, limit=10)] == [1, 2]
    assert [n["id"] for n in store.claim_notifications(now + lease, lease, limit=10)] == [1, 2, 3]  # leases ended


def test_past_half_the_lease_a_sender_gives_back_the_rest_and_still_sends_each_once(tmp_path):
    receiver = WebhookReceiver(delay_seconds=0.7)  # past half of a 1 s lease after one delivery
    try:
        settings = settings_for(tmp_path, STAFF_WEBHOOK_URL=receiver.url, OUTBOX_LEASE_SECONDS="1")
        store = HandoffStore(settings.database_url)
        for _ in range(3):
            store.create_handoff(REQUEST)
        given_back = []
        release = store.release
        store.release = lambda ids, token: (given_back.append(ids), release(ids, token))
        assert run_once(store, settings) == 3
        assert given_back == [[2, 3], [3]]  # each time after one delivery took past half the lease
        assert len(receiver.idempotency_keys) == len(set(receiver.idempotency_keys)) == 3
        assert [n["status"] for n in store.notifications()] == ["sent"] * 3
    finally:
        receiver.stop()
