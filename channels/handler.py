"""What the input channels do with a visitor's message before Rasa handles it.

- A message over the length cap never reaches NLU (its time grows with length and runs on
  the server's one event loop: 100 kB held every visitor for 14-17 s) nor the tracker: the
  channel sends the domain response utter_message_too_long itself, with the conversation's
  slots for the clinic's details.
- Other messages are cleaned (channels/inbound.py).
- A conversation whose session start failed (the action server was down) starts again once
  it answers. Without it no SessionStarted is logged, the clinic_* slots keep the domain's
  initial values and the rules, which expect a session that began with a listen, stop
  matching; Rasa runs the session start only for a new or expired (60 minutes) session.
"""
import logging
from typing import Any, Awaitable, Callable, List

from rasa.core.channels.channel import UserMessage
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.events import ActionExecuted, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint

from channels.inbound import prepare_message

logger = logging.getLogger(__name__)

TOO_LONG_RESPONSE = "utter_message_too_long"


def session_start_failed(tracker: DialogueStateTracker) -> bool:
    """The latest action_session_start logged no SessionStarted after it."""
    for event in reversed(tracker.events):
        if isinstance(event, SessionStarted):
            return False
        if isinstance(event, ActionExecuted) and event.action_name == ACTION_SESSION_START_NAME:
            return True
    return False


async def restart_failed_session(agent: Any, message: UserMessage) -> None:
    async with agent.lock_store.lock(message.sender_id):
        tracker = await agent.tracker_store.retrieve(message.sender_id)
        if tracker is None or not session_start_failed(tracker):
            return
        await agent.execute_action(message.sender_id, ACTION_SESSION_START_NAME,
                                   message.output_channel, None, None)


async def reply_too_long(agent: Any, message: UserMessage) -> None:
    tracker = (await agent.tracker_store.retrieve(message.sender_id)
               or DialogueStateTracker(message.sender_id, agent.domain.slots))
    reply = await agent.nlg.generate(TOO_LONG_RESPONSE, tracker, message.output_channel.name())
    await message.output_channel.send_response(message.sender_id, reply)


def message_handler(blueprint: Blueprint, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                    max_message_chars: int) -> Callable[[UserMessage], Awaitable[Any]]:
    """`on_new_message` with the length cap, the cleaning and the session restart first."""
    apps: List[Any] = []

    @blueprint.listener("before_server_start")
    async def remember_app(app: Any, _loop: Any) -> None:
        apps.append(app)  # Rasa puts the agent on app.ctx once the model is loaded

    async def handle(message: UserMessage) -> None:
        agent = getattr(apps[0].ctx, "agent", None) if apps else None
        if agent is None or not agent.is_ready():
            return  # what Rasa does too while the model loads
        if len(message.text) > max_message_chars:  # checked first: a huge text costs nothing
            await reply_too_long(agent, message)
            return
        message.text = prepare_message(message.text)
        try:
            await restart_failed_session(agent, message)
        except Exception as exception:  # the message is still answered
            logger.error("Could not restart a failed session start: %s", type(exception).__name__)
        await on_new_message(message)

    return handle
