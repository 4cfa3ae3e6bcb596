"""Every FAQ answer is traceable to the clinic's documents and fits a chat bubble."""
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SEEDS_DIR = Path(os.environ.get("SEEDS_DIR", ROOT.parent / "shared" / "seeds"))
ANSWERS = yaml.safe_load((ROOT / "data/responses/faq.yml").read_text())["responses"]
SOURCES = yaml.safe_load((ROOT / "knowledge/faq_sources.yml").read_text())
NLU = yaml.safe_load((ROOT / "data/nlu/faq.yml").read_text())["nlu"]
# Names and places of the clinics that wrote the documents: the assistant serves any clinic.
DOCUMENT_CLINICS = ["wellcentric", "optimal medical", "omgwellness", "reno", "fresno", "utah", "nevada"]
SLOTS = {"{clinic_name}", "{clinic_phone}", "{clinic_email}"}


def test_every_answer_names_existing_seed_documents():
    assert SEEDS_DIR.is_dir(), f"seed documents not found at {SEEDS_DIR} (set SEEDS_DIR)"
    for response in ANSWERS:
        entry = SOURCES.get(response)
        assert entry and entry.get("sources"), f"{response} has no source"
        for source in entry["sources"]:
            assert (SEEDS_DIR / source).is_file(), f"{response} names missing document {source}"


def test_sources_record_has_no_answers_that_do_not_exist():
    assert set(SOURCES) <= set(ANSWERS)


def test_every_trained_faq_topic_has_an_answer_and_vice_versa():
    topics = {block["intent"] for block in NLU}
    assert {f"utter_{topic}" for topic in topics} == set(ANSWERS)


@pytest.mark.parametrize("response", sorted(ANSWERS))
def test_answer_fits_a_chat_bubble_and_names_no_document_clinic(response):
    text = ANSWERS[response][0]["text"]
    assert 80 <= len(text) <= 600
    assert "<" not in text, "no raw HTML in answers"
    lowered = text.lower()
    assert not [name for name in DOCUMENT_CLINICS if name in lowered]
    placeholders = {word for word in text.split() if word.startswith("{")}
    assert {p.strip(".,;:") for p in placeholders} <= SLOTS


def test_answers_do_not_repeat_what_the_documents_oversell():
    text = " ".join(variant["text"].lower() for variants in ANSWERS.values() for variant in variants)
    assert "permanent relief" not in text
    assert "doesn't decrease" not in text and "does not decrease" not in text
    assert "raise blood pressure" in text or "raised blood pressure" in text


def test_suicidal_thoughts_answer_carries_crisis_resources():
    text = ANSWERS["utter_faq/suicidal_thoughts"][0]["text"]
    assert "988" in text and "911" in text
