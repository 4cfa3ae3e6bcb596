"""RulePolicy on the recent part of a conversation (components/recent_rule_policy.py) predicts
what Rasa's RulePolicy predicts, both trained here on the project's rules, at every action of
long conversations made of the test stories one after another; and no rule is longer than the
part it reads."""
from typing import List, Tuple

import pytest
from rasa.core.policies.policy import PolicyPrediction
from rasa.core.policies.rule_policy import RULES, RulePolicy
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.events import ActionExecuted, ActiveLoop, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.generator import TrainingDataGenerator
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
from rasa.shared.core.training_data.structures import RuleStep
from rasa.shared.importers.importer import TrainingDataImporter

from components.recent_rule_policy import MAX_RULE_USER_TURNS, RECENT_USER_TURNS, RecentRulePolicy, recent_part
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def project():
    importer = TrainingDataImporter.load_from_config(str(ROOT / "config.yml"), str(ROOT / "domain.yml"),
                                                     [str(ROOT / "data")])
    return importer.get_domain(), importer.get_stories()


@pytest.fixture(scope="module")
def policies(project, tmp_path_factory):
    """Rasa's RulePolicy and this one, trained alike on the project's rules."""
    domain, story_graph = project
    trackers = TrainingDataGenerator(story_graph, domain, augmentation_factor=0).generate()
    config = {**RulePolicy.get_default_config(), "core_fallback_threshold": 0.3,
              "core_fallback_action_name": "action_default_fallback", "enable_fallback_prediction": True}
    trained = []
    for kind in (RulePolicy, RecentRulePolicy):
        policy = kind.create(config, LocalModelStorage(tmp_path_factory.mktemp(kind.__name__)),
                             Resource(kind.__name__), ExecutionContext(GraphSchema({}), "test"))
        policy.train(trackers, domain)
        trained.append(policy)
    return trained


def test_no_rule_reaches_further_back_than_the_part_read(project):
    _, story_graph = project
    longest = max(sum(isinstance(event, UserUttered) for event in step.events)
                  for step in story_graph.story_steps if isinstance(step, RuleStep))
    assert longest <= MAX_RULE_USER_TURNS < RECENT_USER_TURNS


def outcome(prediction: PolicyPrediction) -> Tuple:
    return (prediction.probabilities, prediction.events, prediction.is_end_to_end_prediction,
            prediction.is_no_user_prediction, prediction.hide_rule_turn)


def conversation(domain) -> List[Event]:
    """Every test story, one after another, in one session: a form a story leaves open is
    closed before the next story, as a visitor's change of topic would close it."""
    events: List[Event] = [ActionExecuted("action_session_start"), SessionStarted(),
                           SlotSet("clinic_name", "Example"), ActionExecuted("action_listen")]
    reader = YAMLStoryReader(domain)
    for path in sorted((ROOT / "tests" / "stories").glob("*.yml")):
        for step in reader.read_from_file(str(path)):
            events += [ActiveLoop(None), SlotSet("requested_slot", None)]
            for event in step.events:
                last_action = next(e for e in reversed(events) if isinstance(e, ActionExecuted))
                if isinstance(event, UserUttered) and last_action.action_name != "action_listen":
                    events.append(ActionExecuted("action_listen"))
                events.append(event)
                if isinstance(event, UserUttered) and event.intent_name == "crisis":
                    # As Rasa's slot extraction sets it: later answers keep the 988 line (a rule
                    # conditioned on this slot, set long before the part read).
                    events.append(SlotSet("crisis_support_shown", True))
    return events


def test_it_predicts_what_rule_policy_predicts_at_every_action_of_a_long_conversation(project, policies):
    domain, _ = project
    rasas, recent = policies
    events = conversation(domain)
    actions = [index for index, event in enumerate(events) if isinstance(event, ActionExecuted)]
    assert sum(isinstance(event, UserUttered) for event in events) > 50
    for index in actions[4:]:
        tracker = DialogueStateTracker.from_events("visitor", events[:index], domain.slots)
        expected, expected_source = rasas._predict(tracker, domain)
        got, source = recent._predict(tracker, domain)
        assert outcome(got) == outcome(expected), events[index]
        if expected_source in rasas.lookup[RULES]:  # else it names the states seen, all of them
            assert source == expected_source
    # The states it reads are bounded: the last ones only, the same as Rasa's.
    tracker = DialogueStateTracker.from_events("visitor", events, domain.slots)
    assert len(recent_part(tracker, domain).events) < len(tracker.events) / 10


def test_the_part_read_has_the_slots_and_form_the_conversation_had_at_every_point(project):
    domain, _ = project
    turn = [ActionExecuted("action_listen"), UserUttered("…", {"name": "faq"}), ActionExecuted("utter_faq")]
    events = [ActionExecuted("action_session_start"), SessionStarted(), SlotSet("full_name", "Old Session"),
              ActionExecuted("action_session_start"), SessionStarted(), ActiveLoop("booking_form"),
              SlotSet("requested_slot", "full_name"), SlotSet("crisis_support_shown", True),
              SlotSet("full_name", None), *turn * 10, SlotSet("requested_slot", "contact_details"), *turn,
              ActiveLoop(None), *turn]
    full = DialogueStateTracker.from_events("visitor", events, domain.slots)
    part = list(recent_part(full, domain).events)
    assert sum(isinstance(event, UserUttered) for event in part) == RECENT_USER_TURNS
    set_first = next(index for index, event in enumerate(part) if isinstance(event, ActionExecuted))
    start = len(events) - (len(part) - set_first)
    for seen in range(len(events) - start + 1):
        ours = DialogueStateTracker.from_events("visitor", part[:set_first + seen], domain.slots)
        theirs = DialogueStateTracker.from_events("visitor", events[:start + seen], domain.slots)
        assert ours.current_slot_values() == theirs.current_slot_values()
        assert ours.active_loop_name == theirs.active_loop_name
        assert [name for name, slot in ours.slots.items() if slot.has_been_set] == \
               [name for name, slot in theirs.slots.items() if slot.has_been_set]
