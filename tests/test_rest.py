"""End to end over REST against the real trained model and the real servers."""
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from clinic_core.clinic import load_clinic
from clinic_core.settings import CLINIC_FILE, load_settings
from scripts.services import Services, rasa_services
from tests.conftest import MODEL, PORT_OFFSET, ROOT

DOWN_RASA_PORT, UNUSED_PORT = 5206 + PORT_OFFSET, 5299 + PORT_OFFSET
CLINIC = load_clinic(CLINIC_FILE)
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())["responses"]
FAQ = yaml.safe_load((ROOT / "data/responses/faq.yml").read_text())["responses"]
# The first message of a session as the visitor sees it: the clinic's details and the retention filled in.
FRAME = CLINIC.fill(DOMAIN["utter_frame"][0]["text"]).replace(
    "{conversation_retention_days}", str(load_settings().conversation_retention_days))

# One question per topic, in a visitor's words (written for this test only, never trained on).
QUESTIONS = {topic: questions[0] for topic, questions in
             yaml.safe_load((ROOT / "tests/rest_questions.yml").read_text()).items()}


def say(port, sender, message):
    response = requests.post(f"http://localhost:{port}/webhooks/rest/webhook",
                             json={"sender": sender, "message": message}, timeout=30)
    response.raise_for_status()
    return response.json()


def texts(replies):
    return [reply.get("text", "") for reply in replies]


@pytest.fixture(scope="module")
def assistant(stack):
    return stack.rasa_port


@pytest.fixture(scope="module")
def assistant_without_action_server(tmp_path_factory):
    """Only the Rasa server: its action endpoint points at a port where nothing listens."""
    tracker_db = str(tmp_path_factory.mktemp("down") / "tracker.db")
    rasa = rasa_services(str(MODEL), DOWN_RASA_PORT, UNUSED_PORT, tracker_db)[1]
    with Services([rasa]):
        yield DOWN_RASA_PORT


@pytest.mark.parametrize("topic", sorted(QUESTIONS))
def test_every_topic_is_answered(assistant, topic):
    replies = texts(say(assistant, f"faq-{topic}", QUESTIONS[topic]))
    assert CLINIC.fill(FAQ[f"utter_faq/{topic}"][0]["text"]) in replies


def test_visitors_writing_at_once_get_what_each_would_get_alone(assistant):
    """Messages that arrive together are embedded together (components/message_embeddings.py):
    each still gets its own answer, and a crisis in a clause its crisis reply."""
    crisis = "how long is one drip appointment? i keep thinking about killing myself"
    asked = [*QUESTIONS.items(), ("crisis", crisis)]
    with ThreadPoolExecutor(len(asked)) as pool:
        replies = list(pool.map(lambda item: texts(say(assistant, f"together-{uuid.uuid4()}", item[1])), asked))
    for (topic, _), got in zip(asked, replies, strict=True):
        if topic == "crisis":
            assert DOMAIN["utter_crisis"][0]["text"] in got
        else:
            assert CLINIC.fill(FAQ[f"utter_faq/{topic}"][0]["text"]) in got, topic


def test_frame_comes_once_per_session_with_the_clinic_name(assistant):
    sender = f"frame-{uuid.uuid4()}"
    first = texts(say(assistant, sender, "hiya, quick question"))
    assert first[0] == FRAME
    assert CLINIC.name in first[0]
    second = texts(say(assistant, sender, "does it have any side effects i should know about"))
    assert FRAME not in second


def test_a_session_starts_with_its_frame_with_the_action_server_down(assistant_without_action_server):
    sender = f"down-{uuid.uuid4()}"
    first = texts(say(assistant_without_action_server, sender, "hiya, quick question"))
    assert first[0] == FRAME
    assert FRAME not in texts(say(assistant_without_action_server, sender, "does it have any side effects"))


def test_capabilities_menu_has_buttons(assistant):
    replies = say(assistant, f"menu-{uuid.uuid4()}", "what can you help me with")
    menu = [reply for reply in replies if reply.get("buttons")]
    assert menu and len(menu[0]["buttons"]) >= 4


def test_price_is_left_to_staff_with_the_clinic_phone(assistant):
    replies = texts(say(assistant, f"price-{uuid.uuid4()}", "how much does a ketamine infusion cost"))
    assert CLINIC.fill(DOMAIN["utter_ask_cost"][0]["text"]) in replies
    assert CLINIC.phone in " ".join(replies)


def test_informational_question_gets_resources_and_the_answer(assistant):
    replies = texts(say(assistant, f"info-{uuid.uuid4()}", "does ketamine help with suicidal thoughts?"))
    assert DOMAIN["utter_crisis"][0]["text"] in replies
    assert CLINIC.fill(FAQ["utter_faq/suicidal_thoughts"][0]["text"]) in replies


def test_crisis_after_faq_and_after_fallback(assistant):
    sender = f"positions-{uuid.uuid4()}"
    say(assistant, sender, "roughly how long is one drip appointment")
    assert DOMAIN["utter_crisis"][0]["text"] in texts(say(assistant, sender, "i don't want to be alive anymore"))
    say(assistant, sender, "zxqv plorb")
    assert DOMAIN["utter_crisis"][0]["text"] in texts(say(assistant, sender, "i keep thinking about killing myself"))


def test_answers_after_a_crisis_reply_keep_the_988_line(assistant):
    line = DOMAIN["utter_crisis_line"][0]["text"]
    sender = f"after-crisis-{uuid.uuid4()}"
    assert line not in texts(say(assistant, sender, QUESTIONS["treatment_course"]))
    assert DOMAIN["utter_crisis"][0]["text"] in texts(say(assistant, sender, "some days i really wish i was dead"))
    replies = texts(say(assistant, sender, QUESTIONS["side_effects"]))
    assert replies == [CLINIC.fill(FAQ["utter_faq/side_effects"][0]["text"]), line]
    replies = texts(say(assistant, sender, "how much does it cost"))
    assert replies == [CLINIC.fill(DOMAIN["utter_ask_cost"][0]["text"]), line]


def test_two_fallbacks_in_a_row_offer_the_team(assistant):
    # Letters the model has no reading for (a near tie under the fallback threshold). Longer
    # keyboard mashing it may read as out of scope, far from every example, and that reply
    # (with the phone and 988) is not a fallback.
    sender = f"fallback-{uuid.uuid4()}"
    assert CLINIC.fill(DOMAIN["utter_default"][0]["text"]) in texts(say(assistant, sender, "ffff"))
    assert CLINIC.fill(DOMAIN["utter_offer_handoff"][0]["text"]) in texts(say(assistant, sender, "qqq"))


@pytest.mark.parametrize("body", [
    {"sender": "odd", "message": ""},
    {"sender": "odd", "message": "ketamine " * 2000},
    {"sender": "odd", "message": "<script>alert(1)</script> 😀 ¿qué es la ketamina?"},
])
def test_odd_input_gets_a_reply_and_the_server_stays_up(assistant, body):
    response = requests.post(f"http://localhost:{assistant}/webhooks/rest/webhook", json=body, timeout=60)
    assert response.status_code == 200
    assert texts(say(assistant, f"after-{uuid.uuid4()}", "hey again, you still there?"))


@pytest.mark.parametrize("message, response", [
    ("i want to end my life", "utter_crisis"),
    ("my chest hurts and i can't breathe", "utter_medical_emergency"),
])
def test_safety_replies_arrive_with_the_action_server_down(assistant_without_action_server, message, response):
    replies = texts(say(assistant_without_action_server, f"down-{uuid.uuid4()}", message))
    assert DOMAIN[response][0]["text"] in replies


def test_a_question_asked_with_a_crisis_is_answered_with_the_action_server_down(assistant_without_action_server):
    # The answer alongside is decided in the Rasa server (components/safety_policy.py).
    replies = texts(say(assistant_without_action_server, f"down-{uuid.uuid4()}",
                        "does ketamine help with suicidal thoughts?"))
    assert DOMAIN["utter_crisis"][0]["text"] in replies
    assert CLINIC.fill(FAQ["utter_faq/suicidal_thoughts"][0]["text"]) in replies
