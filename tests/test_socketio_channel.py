"""The socket.io channel fix (channels/socketio.py) without a server: sockets join their session's room."""
import asyncio

import pytest

from channels.socketio import PersistentSocketIOInput, valid_session_id


@pytest.mark.parametrize("data", [
    {"session_id": "0123456789abcdef0123456789abcdef"},
    {"session_id": "a-b_c-d_e-f_g-h_"},
])
def test_well_formed_session_ids_are_kept(data):
    assert valid_session_id(data) == data["session_id"]


@pytest.mark.parametrize("data", [
    None, {}, {"session_id": None}, {"session_id": 12345678901234567890}, {"session_id": "short"},
    {"session_id": "x" * 65}, {"session_id": "0123456789abcdef<script>"}, "0123456789abcdef0123",
])
def test_malformed_session_ids_are_refused(data):
    assert valid_session_id(data) is None


def session_request(session_id):
    """Runs the channel's session_request handler on a stubbed server; returns (rooms, emits)."""
    channel = PersistentSocketIOInput.from_credentials({"session_persistence": True})

    async def on_new_message(_):
        return None

    channel.blueprint(on_new_message)
    sio = channel.sio
    rooms, emits = [], []

    async def enter_room(sid, room, namespace=None):  # a coroutine, as in python-socketio >= 5.10
        rooms.append((sid, room))

    async def emit(event, data, room=None, namespace=None):
        emits.append((event, data, room))

    sio.enter_room, sio.emit = enter_room, emit
    handler = sio.handlers["/"]["session_request"]
    asyncio.run(handler("socket-1", {"session_id": session_id}))
    return rooms, emits


def test_the_socket_joins_its_session_room_and_gets_the_confirmation():
    session_id = "0123456789abcdef0123456789abcdef"
    rooms, emits = session_request(session_id)
    assert rooms == [("socket-1", session_id)]
    assert emits == [("session_confirm", session_id, "socket-1")]


def test_a_malformed_session_id_gets_a_new_random_one():
    rooms, emits = session_request("<img src=x>")
    new_id = emits[0][1]
    assert valid_session_id({"session_id": new_id}) == new_id
    assert rooms == [("socket-1", new_id)]
