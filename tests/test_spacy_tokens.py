from rasa.nlu.constants import SPACY_DOCS, TOKENS_NAMES
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from components.spacy_tokens import FingerprintedSpacyTokenizer

TEXT_ = "my mom's on zoloft, can she still get the infusions?"


def tokens(tokenizer_class, nlp):
    message = Message(data={TEXT: TEXT_})
    message.set(SPACY_DOCS[TEXT], nlp(TEXT_))
    tokenizer_class(tokenizer_class.get_default_config()).process([message])
    return message.get(TOKENS_NAMES[TEXT])


def test_the_tokens_and_their_fingerprints_are_rasas(nlp):
    ours, rasas = tokens(FingerprintedSpacyTokenizer, nlp), tokens(SpacyTokenizer, nlp)
    assert ours == rasas
    assert [(t.text, t.lemma, t.data) for t in ours] == [(t.text, t.lemma, t.data) for t in rasas]
    assert [t.fingerprint() for t in ours] == [t.fingerprint() for t in rasas]


def test_a_token_whose_data_changes_has_a_new_fingerprint(nlp):
    token = tokens(FingerprintedSpacyTokenizer, nlp)[0]
    before = token.fingerprint()
    token.set("pattern", {"dose": True})
    assert token.fingerprint() != before
