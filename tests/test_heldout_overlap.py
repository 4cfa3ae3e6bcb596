"""No test message is a copy or a light edit of a training example (scripts/overlap.py)."""
import pytest

from scripts.nlu_eval import heldout_path, load_examples
from scripts.overlap import collect_test_messages, normalise, overlaps, training_examples

TRAINING = training_examples()
SOURCES = collect_test_messages()


def test_every_kind_of_test_message_is_checked():
    for prefix in ("tests/nlu/heldout_frozen", "tests/safety/en/crisis_frozen", "tests/safety/en/crisis_retired",
                   "tests/stories/", "tests/conversations/followups_frozen", "tests/conversations/two_questions_frozen",
                   "tests/rest_questions.yml", "tests/test_rest.py", "tests/test_booking_rest.py"):
        assert any(source.startswith(prefix) and SOURCES[source] for source in SOURCES), prefix
    assert len(TRAINING) > 1000


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_no_test_message_overlaps_training(source):
    found = overlaps(TRAINING, SOURCES[source])
    assert not found, "\n".join(f"{message!r} ~ training {example!r} ({ratio:.2f})"
                                 for message, example, ratio in found)


@pytest.mark.parametrize("message, verdict", [
    ("How long does an infusion take?", True),       # same words, other case and punctuation
    ("how long does one infusoin take", True),       # a typo away
    ("how long will my drip appointment run", False),
])
def test_the_check_catches_copies_and_light_edits(message, verdict):
    assert bool(overlaps(["how long does an infusion take"], [message])) is verdict


def test_normalise_drops_case_and_punctuation():
    assert normalise("  Side-effects?? ¿Qué  tal? ") == "side effects qué tal"


def test_no_frozen_message_is_a_copy_or_light_edit_of_a_dev_message():
    # Blind writers given the same brief write some of the same messages; a frozen message
    # the dev part holds has been studied (session 15 found 89 in the fifth writer's part).
    dev = [text for text, _ in load_examples(heldout_path("dev"))]
    frozen = [text for text, _ in load_examples(heldout_path("frozen"))]
    assert len(overlaps(dev, frozen)) == 0  # the messages themselves are not printed
