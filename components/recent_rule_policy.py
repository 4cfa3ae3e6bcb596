"""Rasa's RulePolicy, reading only the recent part of a conversation.

RulePolicy sets max_history to None and computes a state for every action of the conversation
on every prediction, so a turn's cost grows with the conversation (a prediction took 1.5 ms at
5 turns, 13 ms at 150 and 61 ms at 600). A rule here spans at most MAX_RULE_USER_TURNS visitor
messages (tests/test_recent_rule_policy.py keeps it so), so states from before the last
RECENT_USER_TURNS messages never decide a prediction. This policy computes the states of a copy
of the conversation that starts just before the RECENT_USER_TURNS-th last visitor message, with
the slots and the active form as they were there, read from the end of the conversation;
everything else is RulePolicy's own, on the whole conversation. The same predictions (the test
compares them with RulePolicy's at every action of a long conversation), at a cost set by the
rules' length: 2.5 ms at 5, 150 and 600 turns.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.core.policies.rule_policy import RulePolicy
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.core.domain import Domain, State
from rasa.shared.core.events import (
    ActionExecuted,
    ActionReverted,
    ActiveLoop,
    AllSlotsReset,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

MAX_RULE_USER_TURNS = 2
RECENT_USER_TURNS = MAX_RULE_USER_TURNS + 2


# Events after which the part read cannot be built from the end alone: reverts undo events
# before them, resets start over. The whole conversation is read then (rare, or short).
REWINDS = (ActionReverted, UserUtteranceReverted, Restarted, SessionStarted, AllSlotsReset)


def recent_part(tracker: DialogueStateTracker, domain: Domain, user_turns: int = RECENT_USER_TURNS
                ) -> DialogueStateTracker:
    """The conversation from the action before its `user_turns`-th last visitor message, the
    slots and the active loop set as they were there; the tracker itself when it is shorter.
    Only the end of the conversation is read, back to where the slots changed in that part were
    last set before it."""
    events = list(tracker.events)
    start, seen = None, 0
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], REWINDS):
            return tracker
        if isinstance(events[index], UserUttered):
            seen += 1
            if seen == user_turns:
                start = index
                break
    while start and not isinstance(events[start], ActionExecuted):
        start -= 1
    if not start:
        return tracker
    before = state_before(events, start, tracker)
    if before is None:
        return tracker
    return DialogueStateTracker.from_events(tracker.sender_id, before + events[start:], domain.slots)


def state_before(events: List[Event], start: int, tracker: DialogueStateTracker) -> Optional[List[Event]]:
    """Events that set the slots and the active loop as they were before events[start]: the
    tracker's own values for those the part read leaves alone, else the last value set before
    it. None when a rewind makes that unclear."""
    changed_slots = {event.key for event in events[start:] if isinstance(event, SlotSet)}
    loop_changes = any(isinstance(event, ActiveLoop) for event in events[start:])
    prefix: List[Event] = [SlotSet(name, slot.value) for name, slot in tracker.slots.items()
                           if name not in changed_slots and slot.has_been_set]
    if not loop_changes and tracker.active_loop_name:
        prefix.append(ActiveLoop(tracker.active_loop_name))
    wanted, loop_wanted = set(changed_slots), loop_changes
    for event in reversed(events[:start]):
        if not wanted and not loop_wanted:
            break
        if isinstance(event, (SessionStarted, Restarted)):  # nothing set before this counts
            break
        if isinstance(event, REWINDS):
            return None
        if isinstance(event, SlotSet) and event.key in wanted:
            wanted.discard(event.key)
            prefix.insert(0, event)
        elif isinstance(event, ActiveLoop) and loop_wanted:
            loop_wanted = False
            prefix.append(ActiveLoop(event.name))
    return prefix


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITH_END_TO_END_SUPPORT, is_trainable=True
)
class RecentRulePolicy(RulePolicy):
    def _prediction_states(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        use_text_for_last_user_input: bool = False,
        rule_only_data: Optional[Dict[Text, Any]] = None,
    ) -> List[State]:
        return super()._prediction_states(recent_part(tracker, domain), domain, use_text_for_last_user_input,
                                          rule_only_data)
