"""Turns in arrival order, a few at a time, and messages that wait embedded together."""
import asyncio

from channels import turns
from channels.turns import TurnQueue
from components.message_embeddings import EmbeddingBatcher, embed_messages
from components.minilm import shared_encoder


def run_turns(queue, texts, seconds_each, started=None):
    entered, done = [], []
    in_turn = {"now": 0, "most": 0}

    async def one(text):
        async with queue.turn(text):
            entered.append(text)
            in_turn["now"] += 1
            in_turn["most"] = max(in_turn["most"], in_turn["now"])
            await asyncio.sleep(seconds_each(text))
            in_turn["now"] -= 1
        done.append(text)

    async def all_of_them():
        tasks = []
        for text in texts:
            tasks.append(asyncio.create_task(one(text)))
            # They arrive one after another: each reaches the queue before the next is created,
            # however busy the machine (a sleep of a millisecond let a loaded machine finish
            # each 20 ms turn before the next message arrived).
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    asyncio.run(all_of_them())
    return entered, done, in_turn["most"]


def test_turns_are_taken_in_arrival_order_two_at_a_time():
    texts = [f"message number {n}" for n in range(6)]
    entered, _, most = run_turns(TurnQueue(at_once=2), texts, lambda text: 0.02)
    assert entered == texts
    assert most == 2


def test_a_turn_that_hangs_lets_the_next_one_in():
    texts = ["the hanging one", "the next one"]
    _, done, most = run_turns(TurnQueue(at_once=1, longest_hold=0.05), texts,
                              lambda text: 1.0 if text == "the hanging one" else 0.0)
    assert done == ["the next one", "the hanging one"]
    assert most == 2


def test_messages_that_wait_for_a_turn_are_embedded_together(monkeypatch):
    passes = []
    batcher = EmbeddingBatcher(shared_encoder(),
                              embed=lambda texts, encoder: passes.append(list(texts)) or embed_messages(texts, encoder))
    monkeypatch.setattr(turns, "shared_batcher", lambda: batcher)
    queue = TurnQueue(at_once=1)

    async def arrive_together():
        await asyncio.gather(*(one(text) for text in ("first one here", "second one here", "third one here")))

    async def one(text):
        async with queue.turn(text):
            await asyncio.sleep(0.01)
    asyncio.run(arrive_together())
    # The first found nobody in flight and was embedded alone, on the worker thread, as its turn
    # started; the others were embedded together, and not again when their turns started.
    assert sorted(passes) == [["first one here"], ["second one here", "third one here"]]


def test_a_freed_place_goes_to_the_longest_waiting_turn_not_a_newcomer():
    queue, entered = TurnQueue(at_once=1), []

    async def one(text, then=None):
        async with queue.turn(text):
            entered.append(text)
            await asyncio.sleep(0.01)
            if then:
                tasks.append(asyncio.create_task(then()))  # arrives as the place is freed

    async def scenario():
        tasks.append(asyncio.create_task(one("first one here", then=lambda: one("newcomer one here"))))
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(one("waiting one here")))
        while not all(task.done() for task in tasks):
            await asyncio.gather(*tasks)
    tasks = []
    asyncio.run(scenario())
    assert entered == ["first one here", "waiting one here", "newcomer one here"]


def test_a_turn_cancelled_while_waiting_loses_no_place():
    queue = TurnQueue(at_once=1)

    async def one(text, seconds):
        async with queue.turn(text):
            await asyncio.sleep(seconds)

    async def scenario():
        holding = asyncio.create_task(one("holding one here", 0.02))
        await asyncio.sleep(0)
        given_up = asyncio.create_task(one("given up one", 0.0))
        await asyncio.sleep(0)  # it is waiting now: the holding turn has the place for 20 ms
        given_up.cancel()
        await asyncio.gather(holding, one("later one here", 0.0), return_exceptions=True)
    asyncio.run(scenario())
    assert queue._free == 1 and not queue._waiting
