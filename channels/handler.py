"""What the input channels do with a visitor's message before Rasa handles it.

- A message over the length cap never reaches NLU (its time grows with length and runs on
  the server's one event loop: 100 kB held every visitor for 14-17 s) nor the tracker: the
  channel sends the domain response utter_message_too_long itself, with the conversation's
  slots for the clinic's details.
- Other messages are cleaned (channels/inbound.py).
- The session is started here, before Rasa handles the message, so a failed start can be
  mended. action_session_start is a custom action (clinic.yml's details, the first message);
  with the action server down Rasa logs it without its events: no SessionStarted and no
  action_listen, so no rule (each expects the visitor's message after a listen) matched and
  every message got the fallback, and an expired session stayed expired. A new or expired
  session whose start fails therefore gets what Rasa's own session start logs, a
  SessionStarted (marked, see actions/session.py) and an action_listen: the rules answer, and
  the clinic_* slots keep the domain's initial values.
- Such a conversation runs the session start again on each next message, so once the action
  server answers, the first message is shown, the slots fill from clinic.yml and the slots set
  meanwhile (a crisis reply's crisis_support_shown) are kept. A retry that fails is followed by
  a listen only, so the conversation's slots and form stay as they are.
"""
import logging
from typing import Any, Awaitable, Callable, List

from rasa.core.channels.channel import UserMessage
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.events import ActionExecuted, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint

from actions.session import STARTED_WITHOUT_ACTION_SERVER
from channels.inbound import prepare_message

logger = logging.getLogger(__name__)

TOO_LONG_RESPONSE = "utter_message_too_long"


def session_start_failed(tracker: DialogueStateTracker) -> bool:
    """The session began without the action server: a session start logged without its
    SessionStarted, or the marked SessionStarted start_session logs for one."""
    for event in reversed(tracker.events):
        if isinstance(event, SessionStarted):
            return bool((event.metadata or {}).get(STARTED_WITHOUT_ACTION_SERVER))
        if isinstance(event, ActionExecuted) and event.action_name == ACTION_SESSION_START_NAME:
            return True
    return False


def start_just_failed(tracker: DialogueStateTracker) -> bool:
    """The last event is a session start logged without its events (the action failed)."""
    last = tracker.events[-1] if tracker.events else None
    return isinstance(last, ActionExecuted) and last.action_name == ACTION_SESSION_START_NAME


async def start_session(agent: Any, message: UserMessage) -> None:
    """Starts a new or expired session, or again one that began without the action server."""
    processor = agent.processor
    async with agent.lock_store.lock(message.sender_id):
        tracker = await processor.fetch_tracker_and_update_session(
            message.sender_id, message.output_channel, message.metadata)
        if start_just_failed(tracker):  # a new or expired session: begin it without the action server
            tracker.update(SessionStarted(metadata={STARTED_WITHOUT_ACTION_SERVER: True}))
            tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
        elif session_start_failed(tracker):  # try again: the action server may be back
            await processor.save_tracker(tracker)
            await agent.execute_action(message.sender_id, ACTION_SESSION_START_NAME,
                                       message.output_channel, None, None)
            tracker = await processor.get_tracker(message.sender_id)
            if start_just_failed(tracker):
                tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
        await processor.save_tracker(tracker)


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
            await start_session(agent, message)
        except Exception as exception:  # the message is still answered
            logger.error("Could not start the session: %s", type(exception).__name__)
        await on_new_message(message)

    return handle
