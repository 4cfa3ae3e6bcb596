"""What the input channels do with a visitor's message before Rasa handles it.

- A message over the length cap never reaches NLU (its time grows with length and runs on
  the server's one event loop: 100 kB held every visitor for 14-17 s) nor the tracker: the
  channel sends the domain response utter_message_too_long itself, with the conversation's
  slots for the clinic's details.
- Other messages are cleaned (channels/inbound.py).
- The session is started here, in the Rasa server, before Rasa handles the message: Rasa's own
  session start (a SessionStarted and a listen), then the clinic's details from clinic.yml as
  slots (read at each new session, so an edited file applies without a restart) and the frame
  message, utter_frame, which says how long the conversation is kept. No action-server round
  trip on a visitor's first message, and a session starts the same whether the action server
  is up or not.
- Turns are taken one at a time, strictly in arrival order (channels/turns.py).

Importing it installs the project's two patches of Rasa in the Rasa server: the action-reply
check built once (channels/action_reply_validation.py) and models loaded without tracing a
training step (channels/model_loading.py).
"""
import logging
from typing import Any, Awaitable, Callable, List

from rasa.core.actions.action import create_bot_utterance
from rasa.core.channels.channel import UserMessage
from rasa.shared.core.events import BotUttered, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint

# Installs the action-reply check built once, in the Rasa server only (see the module).
from channels import action_reply_validation, model_loading  # noqa: F401
from channels.inbound import prepare_message
from channels.turns import TURNS
from clinic_core.clinic import load_clinic
from clinic_core.settings import CLINIC_FILE

logger = logging.getLogger(__name__)

TOO_LONG_RESPONSE = "utter_message_too_long"
FRAME_RESPONSE = "utter_frame"


def frame_owed(tracker: DialogueStateTracker) -> bool:
    """The session has just started: nothing said since its SessionStarted."""
    for event in reversed(tracker.events):
        if isinstance(event, SessionStarted):
            return True
        if isinstance(event, (UserUttered, BotUttered)):
            return False
    return False


async def start_session(agent: Any, message: UserMessage, retention_days: int) -> None:
    """Starts a new or expired session: Rasa's session start, the clinic's details, the frame."""
    processor = agent.processor
    async with agent.lock_store.lock(message.sender_id):
        tracker = await processor.fetch_tracker_and_update_session(
            message.sender_id, message.output_channel, message.metadata)
        if frame_owed(tracker):
            clinic = load_clinic(CLINIC_FILE)
            for name, value in clinic.slots().items():
                tracker.update(SlotSet(name, value))
            frame = await agent.nlg.generate(FRAME_RESPONSE, tracker, message.output_channel.name(),
                                             conversation_retention_days=retention_days)
            if frame:
                said = create_bot_utterance(frame)
                tracker.update(said)
                await message.output_channel.send_response(message.sender_id, said.message())
        await processor.save_tracker(tracker)


async def reply_too_long(agent: Any, message: UserMessage) -> None:
    tracker = (await agent.tracker_store.retrieve(message.sender_id)
               or DialogueStateTracker(message.sender_id, agent.domain.slots))
    reply = await agent.nlg.generate(TOO_LONG_RESPONSE, tracker, message.output_channel.name())
    await message.output_channel.send_response(message.sender_id, reply)


def message_handler(blueprint: Blueprint, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                    max_message_chars: int, retention_days: int) -> Callable[[UserMessage], Awaitable[Any]]:
    """`on_new_message` with the length cap, the cleaning and the session restart first, in its turn."""
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
        async with TURNS.turn(message.text):
            try:
                await start_session(agent, message, retention_days)
            except Exception as exception:  # the message is still answered
                logger.error("Could not start the session: %s", type(exception).__name__)
            await on_new_message(message)

    return handle
