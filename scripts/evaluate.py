"""`make eval`: this project's config against stock Rasa, trained on the same data in one run.

For each config: training time (no cache), model load time, held-out intent accuracy,
FAQ answer accuracy, out-of-scope precision and recall, and the median REST reply time
(median over --rounds rounds of the median over --messages messages). Then the ratio of
ours to stock, and a sweep of the FallbackClassifier threshold over the held-out set.
"""
import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.nlu_eval import OUT_OF_SCOPE, load_agent, load_examples, parse_all, score  # noqa: E402
from scripts.services import PROJECT_ROOT, VENV_BIN, Services, rasa_services  # noqa: E402

CONFIGS = {"ours": PROJECT_ROOT / "config.yml", "stock": PROJECT_ROOT / "benchmarks" / "stock_config.yml"}


def train(config: Path, out_dir: Path, name: str) -> float:
    # A private copy: rasa writes its default pipeline into a config that has none.
    config_copy = out_dir / f"{name}_config.yml"
    shutil.copy(config, config_copy)
    start = time.perf_counter()
    subprocess.run(
        [str(VENV_BIN / "rasa"), "train", "--config", str(config_copy), "--out", str(out_dir),
         "--fixed-model-name", name],
        cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL,
        # No cache, so each config pays its full training cost.
        env={**os.environ, "RASA_MAX_CACHE_SIZE": "0"},
    )
    return time.perf_counter() - start


def rest_reply_ms(model: Path, messages: List[str], rounds: int, port: int) -> float:
    url = f"http://localhost:{port}/webhooks/rest/webhook"
    with Services(rasa_services(str(model), port, port + 50), log=open("/dev/null", "w")):
        requests.post(url, json={"sender": "warm-up", "message": "hello"}, timeout=60)
        medians = []
        for _ in range(rounds):
            timings = []
            for message in messages:
                start = time.perf_counter()
                requests.post(url, json={"sender": f"eval-{uuid.uuid4()}", "message": message}, timeout=60)
                timings.append((time.perf_counter() - start) * 1000)
            medians.append(statistics.median(timings))
    return statistics.median(medians)


def threshold_sweep(parses, thresholds) -> List[str]:
    """How out-of-scope precision/recall and in-scope accuracy move with the fallback threshold."""
    rows = []
    for threshold in thresholds:
        tp = fp = fn = in_scope_ok = in_scope = 0
        for _, label, parse in parses:
            ranking = [r for r in parse.get("intent_ranking", []) if r["name"] != "nlu_fallback"]
            top = ranking[0] if ranking else {"name": "nlu_fallback", "confidence": 0.0}
            safety = parse.get("safety_net")
            predicted = safety["intent"] if safety else (
                "nlu_fallback" if top["confidence"] < threshold else top["name"])
            is_oos, said_oos = label == "out_of_scope", predicted in OUT_OF_SCOPE
            tp += is_oos and said_oos
            fp += said_oos and not is_oos
            fn += is_oos and not said_oos
            if not is_oos:
                in_scope += 1
                in_scope_ok += predicted == label.split("/")[0]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        rows.append(f"  {threshold:.2f}   {precision:7.1%}   {recall:7.1%}   {in_scope_ok / in_scope:7.1%}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args()

    examples = load_examples()
    rest_messages = [text for text, _ in examples[:: max(1, len(examples) // args.messages)]][: args.messages]
    results: Dict[str, Dict[str, float]] = {}
    sweeps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for port, (name, config) in zip((5305, 5405), CONFIGS.items(), strict=True):
            print(f"Training {name} ({config.relative_to(PROJECT_ROOT)}) ...", flush=True)
            train_s = train(config, Path(tmp), name)
            model = Path(tmp) / f"{name}.tar.gz"
            start = time.perf_counter()
            agent = load_agent(str(model))
            load_s = time.perf_counter() - start
            parses, parse_ms = asyncio.run(parse_all(agent, examples))
            scores = score(parses, parse_ms)
            sweeps[name] = parses
            del agent
            results[name] = {
                "training time (s)": train_s,
                "model load time (s)": load_s,
                "intent accuracy": scores.intent_accuracy,
                "FAQ answer accuracy": scores.faq_answer_accuracy,
                "response-selector accuracy": scores.selector_accuracy,
                "out-of-scope precision": scores.oos_precision,
                "out-of-scope recall": scores.oos_recall,
                "median REST reply (ms)": rest_reply_ms(model, rest_messages, args.rounds, port),
            }

    print(f"\nHeld-out set: {len(examples)} messages. REST: median of {args.rounds} rounds "
          f"x {len(rest_messages)} messages.\n")
    print("| figure | this project | stock `rasa init` | ratio (ours / stock) |")
    print("|---|---|---|---|")
    for figure in results["ours"]:
        ours, stock = results["ours"][figure], results["stock"][figure]
        fmt = "{:.1%}" if "accuracy" in figure or "precision" in figure or "recall" in figure else "{:.1f}"
        ratio = f"{ours / stock:.2f}" if stock else "n/a"
        print(f"| {figure} | {fmt.format(ours)} | {fmt.format(stock)} | {ratio} |")

    print("\nFallback threshold sweep on this project's model (held-out set):")
    print("  threshold  OOS prec.  OOS recall  in-scope acc.")
    for row in threshold_sweep(sweeps["ours"], [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
