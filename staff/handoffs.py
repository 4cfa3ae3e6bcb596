"""What staff do with handoffs, in the inbox and at the command line, each recorded in the audit log.

Views are recorded before anything is shown; a status change or a deletion in the same
transaction as its entry.
"""
from functools import partial
from typing import Any, Dict, List, Optional

from clinic_core.retention import TrackerDatabase
from clinic_core.storage import HandoffStore, StorageUnavailable
from staff.audit import Actor, AuditLog, record


class ConversationStoreUnavailable(Exception):
    """The conversations' database could not be changed (its cause is chained); nothing was deleted."""


def list_handoffs(store: HandoffStore, actor: Actor, status: Optional[str], limit: int) -> List[Dict[str, Any]]:
    handoffs = store.list_handoffs(status, limit)
    AuditLog(store).record(actor, "viewed_list", detail=status)
    return handoffs


def view_handoff(store: HandoffStore, actor: Actor, handoff_id: int) -> Optional[Dict[str, Any]]:
    handoff = store.get_handoff(handoff_id)
    if handoff is not None:
        AuditLog(store).record(actor, "viewed_handoff", handoff_id=handoff_id)
    return handoff


def change_status(store: HandoffStore, actor: Actor, handoff_id: int, status: str) -> bool:
    """False when there is no such handoff."""
    return store.set_status(handoff_id, status, also=partial(
        record, actor=actor, action="changed_status", handoff_id=handoff_id, detail=status))


def delete_handoff(store: HandoffStore, actor: Actor, handoff_id: int, tracker: TrackerDatabase) -> Optional[int]:
    """Deletes the handoff, its notifications and its conversation's events from the conversations'
    database; the number of those events, or None when there is no such handoff.

    The conversation goes first: if deleting the handoff then fails, deleting it again finishes the job.
    """
    handoff = store.get_handoff(handoff_id)
    if handoff is None:
        return None
    events = delete_conversation(tracker, handoff["conversation_id"])
    deleted = store.delete_handoff(handoff_id, also=partial(
        record, actor=actor, action="deleted_handoff", handoff_id=handoff_id, detail=f"{events} conversation events"))
    return events if deleted else None


def delete_conversation(tracker: TrackerDatabase, conversation_id: str) -> int:
    """Deletes a conversation's events from Rasa's tracker store; the number deleted."""
    try:
        return tracker.delete_conversation(conversation_id)
    except StorageUnavailable as error:
        raise ConversationStoreUnavailable(str(error)) from error
