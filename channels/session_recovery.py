"""Restarts a conversation whose session start failed, once the action server answers again.

With the action server down, a new conversation's `action_session_start` fails: no
SessionStarted, the clinic_* slots keep the domain's initial values and the rules, which
expect a session that began with a listen, stop matching. Rasa runs the session start only
for a new or expired session (60 minutes), so the conversation would stay that way. Before
each message of such a conversation, the input channels run the session start again: the
clinic details and the first message arrive, and the turn then goes on normally.
"""
import logging
from typing import Any, Awaitable, Callable, List

from rasa.core.channels.channel import UserMessage
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.events import ActionExecuted, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint

logger = logging.getLogger(__name__)


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


def with_session_recovery(blueprint: Blueprint, on_new_message: Callable[[UserMessage], Awaitable[Any]]
                          ) -> Callable[[UserMessage], Awaitable[Any]]:
    """`on_new_message`, first restarting the conversation's failed session start."""
    apps: List[Any] = []

    @blueprint.listener("before_server_start")
    async def remember_app(app: Any, _loop: Any) -> None:
        apps.append(app)  # Rasa puts the agent on app.ctx once the model is loaded

    async def handle(message: UserMessage) -> None:
        agent = getattr(apps[0].ctx, "agent", None) if apps else None
        if agent is not None and agent.is_ready():
            try:
                await restart_failed_session(agent, message)
            except Exception as exception:  # the message is still answered
                logger.error("Could not restart a failed session start: %s", type(exception).__name__)
        await on_new_message(message)

    return handle
