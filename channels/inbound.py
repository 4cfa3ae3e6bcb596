"""What a visitor's message becomes before NLU, the same in every input channel.

Text that Python can hold but NLU and storage cannot (half an emoji, control characters)
is cleaned, so "I want to kill myself" with a broken emoji still gets the crisis reply.
A message with nothing but spacing left (DIET fails on a message without tokens, and the
visitor got no reply) is the fallback intent: "could you put it another way?". Messages
over the length cap never get here (channels/handler.py).
"""
import re

BLANK_PAYLOAD = "/nlu_fallback"

# Unpaired UTF-16 halves (JSON "\ud83d" decodes to one) cannot be encoded as UTF-8.
LONE_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Control characters other than tab and line breaks, which are spacing.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Invisible format characters (zero-width spaces and joiners, bidi controls, soft hyphen,
# byte order mark): they would hide a word from the safety patterns.
INVISIBLE_FORMAT = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean_text(text: str) -> str:
    text = LONE_SURROGATES.sub("", text)
    text = INVISIBLE_FORMAT.sub("", text)
    return CONTROL_CHARACTERS.sub(" ", text)


def prepare_message(text: str) -> str:
    """The text NLU gets: cleaned, or the fallback intent when nothing is left."""
    text = clean_text(text)
    return text if text.strip() else BLANK_PAYLOAD
