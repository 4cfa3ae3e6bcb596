"""The socket.io channel (channels/socketio.py) without a server: sockets join their session's
room, and only session ids the server signed are kept."""
import asyncio

import pytest

from channels.socketio import PersistentSocketIOInput, SessionIds

KEY = b"k" * 32


@pytest.fixture
def channel(monkeypatch):
    monkeypatch.setenv("SESSION_SIGNING_KEY", KEY.decode())
    channel = PersistentSocketIOInput.from_credentials({"session_persistence": True})

    async def on_new_message(_):
        return None

    channel.blueprint(on_new_message)
    return channel


def test_an_issued_session_id_is_verified():
    ids = SessionIds(KEY)
    session_id = ids.issue()
    assert len(session_id) == 64 and ids.verified({"session_id": session_id}) == session_id


@pytest.mark.parametrize("data", [
    None, {}, {"session_id": None}, {"session_id": 12345678901234567890}, {"session_id": "default"},
    {"session_id": "0123456789abcdef0123456789abcdef"},  # a well-formed id the client made up
    {"session_id": "0" * 64}, {"session_id": "x" * 100_000}, {"session_id": "0123456789abcdef<script>"},
    "0123456789abcdef0123",
])
def test_ids_the_server_did_not_sign_are_refused(data):
    assert SessionIds(KEY).verified(data) is None


def test_an_id_signed_with_another_key_is_refused():
    assert SessionIds(KEY).verified({"session_id": SessionIds(b"o" * 32).issue()}) is None


def session_request(channel, session_id):
    """Runs the channel's session_request handler on a stubbed server; returns (rooms, emits)."""
    sio = channel.sio
    rooms, emits = [], []

    async def enter_room(sid, room, namespace=None):  # a coroutine, as in python-socketio >= 5.10
        rooms.append((sid, room))

    async def emit(event, data, room=None, namespace=None):
        emits.append((event, data, room))

    async def save_session(sid, session, namespace=None):
        return None

    sio.enter_room, sio.emit, sio.save_session = enter_room, emit, save_session
    handler = sio.handlers["/"]["session_request"]
    asyncio.run(handler("socket-1", {"session_id": session_id}))
    return rooms, emits


def test_the_socket_joins_its_signed_session_room_and_gets_the_confirmation(channel):
    session_id = SessionIds(KEY).issue()
    rooms, emits = session_request(channel, session_id)
    assert rooms == [("socket-1", session_id)]
    assert emits == [("session_confirm", session_id, "socket-1")]


@pytest.mark.parametrize("session_id", ["<img src=x>", "default", "0123456789abcdef0123456789abcdef"])
def test_an_unsigned_session_id_gets_a_new_signed_one(channel, session_id):
    rooms, emits = session_request(channel, session_id)
    new_id = emits[0][1]
    assert new_id != session_id and SessionIds(KEY).verified({"session_id": new_id}) == new_id
    assert rooms == [("socket-1", new_id)]
