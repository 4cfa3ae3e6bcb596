"""Finds test messages that are copies or light edits of training examples.

A test message overlaps a training example when both are equal after lowercasing and
dropping punctuation, or when difflib's ratio between the normalised texts is 0.85 or more.
Test messages: the held-out NLU sets, the safety panels, the REST tests' messages and the
test stories' user turns. `tests/test_heldout_overlap.py` fails on any overlap;
`python scripts/overlap.py` lists them, and `--drop-training` removes the training examples
involved (the test side, written blind, stays whole) and prints only how many went.
"""
from __future__ import annotations

import ast
import difflib
import re
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_RATIO = 0.85
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def nlu_examples(path: Path) -> Iterator[Tuple[str, str]]:
    """(label, text) pairs of a Rasa NLU YAML file, entity annotations removed."""
    for block in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu", []):
        label = block.get("intent") or block.get("synonym") or block.get("regex") or block.get("lookup")
        for line in (block.get("examples") or "").splitlines():
            line = line.strip()
            if line.startswith("- "):
                yield label, _ANNOTATION.sub(r"\1", line[2:].strip())


def labelled_training_examples(root: Path = PROJECT_ROOT) -> List[Tuple[str, str]]:
    """(text, label) for every example in data/nlu, FAQ examples labelled faq/<topic>."""
    return [(text, label) for path in sorted((root / "data" / "nlu").rglob("*.yml"))
            for label, text in nlu_examples(path)]


def training_examples(root: Path = PROJECT_ROOT) -> List[str]:
    return [text for text, _ in labelled_training_examples(root)]


def _panel_messages(path: Path) -> Iterator[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for messages in (data or {}).values():
        for message in messages or []:
            if isinstance(message, str):
                yield message


def _story_user_turns(path: Path) -> Iterator[str]:
    for story in yaml.safe_load(path.read_text(encoding="utf-8")).get("stories", []):
        for step in story.get("steps", []):
            if isinstance(step.get("user"), str):
                yield step["user"].strip()


# Functions whose message argument the REST tests send to the assistant.
_SENDERS = {"say": 2, "ask": 0, "send": 1}


def _rest_messages(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SENDERS:
            index = _SENDERS[node.func.id]
            if len(node.args) > index and isinstance(node.args[index], ast.Constant) \
                    and isinstance(node.args[index].value, str):
                yield node.args[index].value


def _conversation_messages(path: Path) -> Iterator[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    # Only the last turn is scored; the earlier ones just set the context.
    for conversation in data.get("conversations", []):
        yield conversation["turns"][-1]
    for message in data.get("messages", []):
        yield message["text"]


def collect_test_messages(root: Path = PROJECT_ROOT) -> Dict[str, List[str]]:
    """Every message a test sends or scores, by the file it comes from."""
    tests = root / "tests"
    found: Dict[str, List[str]] = {}
    for path in sorted((tests / "nlu").rglob("*.yml")):
        found[str(path.relative_to(root))] = [text for _, text in nlu_examples(path)]
    for path in sorted((tests / "safety").rglob("*.yml")):
        found[str(path.relative_to(root))] = list(_panel_messages(path))
    for path in sorted((tests / "stories").rglob("*.yml")):
        found[str(path.relative_to(root))] = list(_story_user_turns(path))
    for path in sorted((tests / "conversations").rglob("*.yml")):
        found[str(path.relative_to(root))] = list(_conversation_messages(path))
    rest_questions = tests / "rest_questions.yml"
    if rest_questions.exists():
        found[str(rest_questions.relative_to(root))] = list(_panel_messages(rest_questions))
    for path in sorted(tests.rglob("test_*.py")):
        messages = list(_rest_messages(path))
        if messages:
            found[str(path.relative_to(root))] = messages
    return found


def overlaps(training: List[str], messages: List[str]) -> List[Tuple[str, str, float]]:
    """(test message, training example, ratio) for every overlapping pair."""
    train = [(text, normalise(text)) for text in training]
    exact = {norm: text for text, norm in train}
    found = []
    matcher = difflib.SequenceMatcher(autojunk=False)
    for message in messages:
        norm = normalise(message)
        if not norm:
            continue
        if norm in exact:
            found.append((message, exact[norm], 1.0))
            continue
        matcher.set_seq2(norm)
        for text, train_norm in train:
            matcher.set_seq1(train_norm)
            # The cheap upper bounds first: most pairs are ruled out without the full ratio.
            if matcher.real_quick_ratio() >= MAX_RATIO and matcher.quick_ratio() >= MAX_RATIO \
                    and matcher.ratio() >= MAX_RATIO:
                found.append((message, text, matcher.ratio()))
                break
    return found


def drop_training_examples(examples: List[str], root: Path = PROJECT_ROOT) -> int:
    """Removes these examples' lines from data/nlu; returns how many lines went."""
    unwanted = {normalise(example) for example in examples}
    removed = 0
    for path in sorted((root / "data" / "nlu").rglob("*.yml")):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not (
            line.strip().startswith("- ") and normalise(_ANNOTATION.sub(r"\1", line.strip()[2:])) in unwanted)]
        if len(kept) != len(lines):
            path.write_text("".join(kept), encoding="utf-8")
            removed += len(lines) - len(kept)
    return removed


def main() -> int:
    drop = "--drop-training" in sys.argv[1:]
    total = 0
    # Dropping one example can uncover another near copy of the same message.
    while True:
        training = training_examples()
        found = [(source, hit) for source, messages in collect_test_messages().items()
                 for hit in overlaps(training, messages)]
        if not drop or not found:
            break
        removed = drop_training_examples([example for _, (_, example, _) in found])
        total += removed
        print(f"dropped {removed} training examples")
    for source, (message, example, ratio) in found:
        print(f"{source}: {message!r} ~ training {example!r} ({ratio:.2f})")
    print(f"{len(found)} overlapping test messages" + (f"; {total} training examples dropped" if drop else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
