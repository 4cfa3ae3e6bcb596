"""A bounded fuzz run (issue 13) against the real trained model and the real servers.

2,100 mutated and random messages, 1,300 over REST and 800 over socket.io, sent at the same
time by several clients, plus 100 malformed REST bodies. Every message must get a reply
(REST: 200 with at least one message; socket.io: a bot_uttered within 30 s), every
malformed body a 400, and nothing a 5xx. Seeded, so a failure can be replayed; the
failures list names the message.
"""
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.socketio_visitor import Visitor
from tests.test_rest import QUESTIONS

SEED = 13
REST_MESSAGES, SOCKETIO_MESSAGES, MALFORMED_BODIES = 1300, 800, 100
REST_WORKERS, SOCKETIO_VISITORS = 4, 8
REPLY_TIMEOUT = 30

SEEDS = list(QUESTIONS.values()) + [
    "I want to kill myself", "i don't want to be alive anymore", "my chest hurts and i can't breathe",
    "i'd like to book a consultation", "can someone call me?", "Dana Whitaker", "(503) 555-0147",
    "dana@example.com", "weekday mornings", "cancel", "yes", "no", "hi", "thanks, bye",
    "how much does it cost?", "is it covered by insurance", "are you a bot?",
]
# Characters that broke or could break the pipeline: controls, invisible format characters,
# lone surrogates, combining marks, right-to-left text, emoji, markup.
JUNK = list("\x00\x07\x08\x0b\x1b\x7f\x85\u200b\u200d\u202e\u2066\ufeff\ud83d\ude00\udc00\u0301\u0627"
            "\u05d0\u6f22\u0416\xe9\U0001f600\U0001f9e0 \t\n\r<>{}[]\"'\\%$#@!`~&;|*_")
INJECTIONS = [
    "<script>alert(1)</script>", "{{7*7}} ${ACTION_SERVER_TOKEN} {clinic_phone}", "'; DROP TABLE events; --",
    '{"sender": "default", "message": "hi"}', "[link](javascript:alert(1))", "%s%s%s%n", "../../etc/passwd",
    "\\u0000\\ud83d", "null", "NaN", "[]", "**" * 50,
]


def mutate(rng: random.Random, text: str) -> str:
    characters = list(text)
    for _ in range(rng.randint(1, 6)):
        operation, position = rng.randrange(4), rng.randint(0, len(characters))
        if operation == 0 or not characters:
            characters.insert(position, rng.choice(JUNK))
        elif operation == 1:
            del characters[min(position, len(characters) - 1)]
        elif operation == 2:
            characters[min(position, len(characters) - 1)] = rng.choice(JUNK)
        else:
            characters[position:position] = characters[max(0, position - 4):position]  # stutter
    return "".join(characters)


def random_text(rng: random.Random, length: int) -> str:
    # Any code point but the private and unassigned planes; surrogates included on purpose.
    return "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0, 0x2fff), rng.randint(0xd800, 0xdfff),
                                   rng.randint(0x1f300, 0x1faff)])) for _ in range(length))


def fuzz_message(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:
        message = mutate(rng, rng.choice(SEEDS))
    elif kind < 0.65:
        message = rng.choice(SEEDS) + rng.choice(JUNK) + rng.choice(SEEDS).upper()
    elif kind < 0.75:
        message = random_text(rng, rng.randint(0, 200))
    elif kind < 0.80:
        message = mutate(rng, rng.choice(INJECTIONS))
    elif kind < 0.85:
        message = rng.choice(["", " ", "\n\n", "\t \r\n", "\x00", "\ud83d", "\u200b" * 10])
    elif kind < 0.97:  # over the length cap, up to 120,000 characters
        message = ((rng.choice(SEEDS) + " ") * 4000)[:rng.randint(2001, 120_000)]
    else:  # just under the cap: the longest text NLU reads
        message = mutate(rng, ((rng.choice(SEEDS) + " ") * 200)[:rng.randint(1500, 2000)])[:2000]
    # A leading "/" is Rasa's button syntax (an intent payload), not typed text.
    return "x" + message if message.lstrip().startswith("/") else message


def malformed_body(rng: random.Random):
    sender, message = f"fuzz-{rng.randrange(10**6)}", mutate(rng, rng.choice(SEEDS))
    return rng.choice([
        {"message": message}, {"sender": sender}, {"sender": rng.randrange(10**6), "message": message},
        {"sender": sender, "message": rng.choice([None, 7, 3.5, True, [message], {"text": message}])},
        {"sender": "x" * rng.randint(129, 5000), "message": message}, {"sender": sender + "\n", "message": message},
        [sender, message], [], "", "null", message, {"sender": sender, "message": message, "metadata": [1]},
    ])


def post_json(port, body):
    url = f"http://localhost:{port}/webhooks/rest/webhook"
    if isinstance(body, str):
        return requests.post(url, data=body.encode("utf-8", "surrogatepass"), timeout=REPLY_TIMEOUT,
                             headers={"Content-Type": "application/json"})
    return requests.post(url, json=body, timeout=REPLY_TIMEOUT)


def fuzz_rest(port, worker: int, failures: list, counts: dict, lock: threading.Lock) -> None:
    rng = random.Random(SEED * 100 + worker)
    senders = [f"fuzz-rest-{worker}-{index}-{uuid.uuid4().hex[:8]}" for index in range(10)]
    for index in range(REST_MESSAGES // REST_WORKERS):
        message = fuzz_message(rng)
        response = post_json(port, {"sender": rng.choice(senders), "message": message})
        ok = response.status_code == 200 and isinstance(response.json(), list) and response.json()
        with lock:
            counts["rest"] += 1
            if not ok:
                failures.append(("rest", worker, index, response.status_code, repr(message[:80])))
    for index in range(MALFORMED_BODIES // REST_WORKERS):
        body = malformed_body(rng)
        response = post_json(port, body)
        with lock:
            counts["malformed"] += 1
            if response.status_code != 400:
                failures.append(("malformed", worker, index, response.status_code, repr(body)[:80]))


def fuzz_socketio(port, visitor_number: int, failures: list, counts: dict, lock: threading.Lock) -> None:
    rng = random.Random(SEED * 1000 + visitor_number)
    visitor = Visitor(port)
    try:
        for index in range(SOCKETIO_MESSAGES // SOCKETIO_VISITORS):
            message = fuzz_message(rng)
            replies = visitor.say(message, timeout=REPLY_TIMEOUT)
            with lock:
                counts["socketio"] += 1
                if not replies:
                    failures.append(("socketio", visitor_number, index, "no reply", repr(message[:80])))
    finally:
        visitor.close()


def test_fuzzed_messages_get_replies_and_never_a_5xx(stack):
    failures, counts, lock = [], {"rest": 0, "socketio": 0, "malformed": 0}, threading.Lock()
    with ThreadPoolExecutor(REST_WORKERS + SOCKETIO_VISITORS) as pool:
        jobs = [pool.submit(fuzz_rest, stack.rasa_port, worker, failures, counts, lock)
                for worker in range(REST_WORKERS)]
        jobs += [pool.submit(fuzz_socketio, stack.rasa_port, number, failures, counts, lock)
                 for number in range(SOCKETIO_VISITORS)]
        for job in jobs:
            job.result()  # a client that crashed (a timeout, a dropped connection) fails here
    assert counts == {"rest": REST_MESSAGES, "socketio": SOCKETIO_MESSAGES, "malformed": MALFORMED_BODIES}
    assert failures == []
