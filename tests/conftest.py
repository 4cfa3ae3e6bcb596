from pathlib import Path

import pytest
import spacy

ROOT = Path(__file__).resolve().parent.parent
SPACY_PIPELINE = ROOT / "build" / "spacy_en_lookup_lemmas"
MODEL = ROOT / "models" / "ketamine-assistant.tar.gz"


@pytest.fixture(scope="session")
def nlp():
    assert SPACY_PIPELINE.is_dir(), "run `make install` first: it builds the spaCy pipeline"
    return spacy.load(SPACY_PIPELINE)
