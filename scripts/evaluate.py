"""`make eval`: this project's config against its peers, trained on the same data in one run.

Rasa configs (trained here, no cache): this config; the config before the sentence encoder
(benchmarks/before_encoder_config.yml), the baseline for the reply-time and load-time ratios;
the stock `rasa init` config. Untrained peers: TF-IDF nearest neighbour and MiniLM
sentence-embedding nearest neighbour over the same training examples, their out-of-scope
thresholds tuned on the dev part. Every figure is printed for the dev part (studied) and the
frozen part (scored only when closing an issue). Reply time: the median REST reply over
--messages dev messages, each a new conversation, with every model's servers up and the
models taking turns round by round, --rest-rounds rounds, in each of --launches launches of
the servers; the median over all rounds. Its ratio is the median over the launches of the
median of each launch's rounds' ratios. Within a launch the rounds' ratios agree closely, but
launches differ (session 23, the same models: 1.25-1.36 in one launch, 1.11-1.40 with a median
of 1.16 in the next), and a whole launch's replies were once 1.7 times as slow as the one
before. The ratio of the medians is printed too. Load time: median
over --rounds rounds of loading each model in turn, after one untimed load that pays Rasa's
imports, with the sentence encoder's weights read again each time. Training time is measured
with one config training at a time, on the machine's cores.

Training is the slow part (the stock config takes hours on a slow 2-core machine), so it can be
done ahead: `--train-ahead DIR` trains the configs as a full run would and records each one's
training time and a digest of its inputs (the config, data/, domain.yml, components/);
`--models-from DIR` then uses the models whose inputs are still the same, byte for byte, and
trains the others.
"""
import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.nlu_eval import OUT_OF_SCOPE, PARTS, heldout_path, load_agent, load_examples, parse_all, score  # noqa: E402
from scripts.overlap import labelled_training_examples  # noqa: E402
from scripts.peers import sentence_embedding_peer, tfidf_peer  # noqa: E402
from scripts.services import PROJECT_ROOT, VENV_BIN, Services, rasa_services  # noqa: E402

CONFIGS = {
    "this project": PROJECT_ROOT / "config.yml",
    "before the encoder": PROJECT_ROOT / "benchmarks" / "before_encoder_config.yml",
    "stock `rasa init`": PROJECT_ROOT / "benchmarks" / "stock_config.yml",
}
ACCURACY_FIGURES = ("FAQ answer accuracy", "out-of-scope precision", "out-of-scope recall",
                    "intent accuracy", "response-selector accuracy")


def train(config: Path, out_dir: Path, name: str) -> float:
    # A private copy: rasa writes its default pipeline into a config that has none.
    config_copy = out_dir / f"{name}_config.yml"
    shutil.copy(config, config_copy)
    start = time.perf_counter()
    result = subprocess.run(
        [str(VENV_BIN / "rasa"), "train", "--config", str(config_copy), "--out", str(out_dir),
         "--fixed-model-name", name],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
        # No cache, so each config pays its full training cost.
        env={**os.environ, "RASA_MAX_CACHE_SIZE": "0"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"training {name} ({config.name}) failed with exit status {result.returncode}")
    return time.perf_counter() - start


def training_inputs_digest(config: Path) -> str:
    """sha256 over what a config's model is trained from: the config, data/, domain.yml and,
    for a config that uses any, the project's components; names included."""
    paths = [config, PROJECT_ROOT / "domain.yml", *(PROJECT_ROOT / "data").rglob("*.yml")]
    if "components." in config.read_text():
        paths += (PROJECT_ROOT / "components").rglob("*.py")
    paths = sorted(paths)
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def trained_ahead(name: str, digest: str, directory: Path) -> Optional[float]:
    """The recorded training seconds of a model trained ahead into directory from the inputs
    with this digest, or None."""
    record = directory / f"{slug(name)}.json"
    if not record.exists() or not (directory / f"{slug(name)}.tar.gz").exists():
        return None
    recorded = json.loads(record.read_text())
    if recorded["training_inputs_sha256"] != digest:
        return None
    return recorded["training_seconds"]


def train_ahead(configs: Dict[str, Path], directory: Path) -> None:
    """Trains into directory every config with no model there for today's inputs, as a full run
    would (one at a time, no cache), and records each one's inputs digest and training time."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {name: training_inputs_digest(path) for name, path in configs.items()}
    missing = {name: path for name, path in configs.items() if trained_ahead(name, digests[name], directory) is None}
    seconds = train_all(missing, directory)
    for name, path in missing.items():
        if training_inputs_digest(path) != digests[name]:
            raise RuntimeError(f"the training inputs of {name} changed while it trained")
        (directory / f"{slug(name)}.json").write_text(
            json.dumps({"training_inputs_sha256": digests[name], "training_seconds": seconds[name]}))
        print(f"{name} trained in {seconds[name]:.0f} s: {directory / slug(name)}.tar.gz", flush=True)


def slug(name: str) -> str:
    return "".join(c for c in name if c.isalnum())


def train_all(configs: Dict[str, Path], out_dir: Path) -> Dict[str, float]:
    """Trains the configs one at a time, so that each one's time is its own on the machine's
    cores; the stock config (hours on a slow machine) last, so a failing config fails early."""
    return {name: train(path, out_dir, slug(name))
            for name, path in sorted(configs.items(), key=lambda item: "stock" in item[0])}


def rest_reply_ms(models: Dict[str, Path], messages: List[str], rounds: int,
                  ports: List[int]) -> Dict[str, List[float]]:
    """Each model's median REST reply over the messages, round by round.
    Every model's servers are up together and the models take turns, all the messages each,
    in a rotating order, so that the machine's slow spells fall on all of them alike. Turn by
    turn, each reply would find the processor's caches filled by another model, which no
    server meets in use."""
    urls = {name: f"http://localhost:{port}/webhooks/rest/webhook" for name, port in zip(models, ports, strict=False)}
    medians: Dict[str, List[float]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as servers:
        for (name, model), port in zip(models.items(), ports, strict=False):
            servers.enter_context(Services(rasa_services(str(model), port, port + 50, f"{scratch}/{slug(name)}.db"),
                                           log=open(os.devnull, "w")))
            requests.post(urls[name], json={"sender": "warm-up", "message": "hello"}, timeout=60)
        names = list(models)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                timings = []
                for message in messages:
                    start = time.perf_counter()
                    requests.post(urls[name], json={"sender": f"eval-{uuid.uuid4()}", "message": message}, timeout=60)
                    timings.append((time.perf_counter() - start) * 1000)
                medians[name].append(statistics.median(timings))
    return medians


def load_times(models: Dict[str, Path], rounds: int) -> Dict[str, float]:
    """Median seconds to load each model, the models taking turns in one process."""
    from components.minilm import shared_encoder

    load_agent(str(next(iter(models.values()))))
    seconds: Dict[str, List[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            shared_encoder.cache_clear()
            start = time.perf_counter()
            agent = load_agent(str(model))
            seconds[name].append(time.perf_counter() - start)
            del agent
    return {name: statistics.median(values) for name, values in seconds.items()}


def accuracy_figures(parses) -> Dict[str, float]:
    return score(parses, []).figures()


def threshold_sweep(parses, thresholds) -> List[str]:
    """How out-of-scope precision/recall and FAQ answer accuracy move with the fallback threshold."""
    rows = []
    for threshold in thresholds:
        tp = fp = fn = faq_ok = faq = 0
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
            if label.startswith("faq/"):
                faq += 1
                chosen = parse.get("response_selector", {}).get("faq", {}).get("response", {})
                faq_ok += predicted == "faq" and chosen.get("intent_response_key") == label
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        rows.append(f"  {threshold:.2f}   {precision:7.1%}   {recall:7.1%}   {faq_ok / faq:7.1%}")
    return rows


def print_table(title: str, columns: Dict[str, Dict[str, float]], rows: List[str]) -> None:
    names = list(columns)
    print(f"\n{title}\n")
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        cells = []
        for name in names:
            value = columns[name].get(row)
            if value is None:
                cells.append("")
            elif row in ACCURACY_FIGURES:
                cells.append(f"{value:.1%}")
            else:
                cells.append(f"{value:.1f}")
        print(f"| {row} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--rest-rounds", type=int, default=10)
    parser.add_argument("--launches", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[], choices=list(CONFIGS),
                        help="leave a Rasa config out (the stock one trains for 40 minutes to hours on 2 cores)")
    parser.add_argument("--train-ahead", type=Path, metavar="DIR",
                        help="only train the configs into DIR, for a later --models-from DIR")
    parser.add_argument("--models-from", type=Path, metavar="DIR",
                        help="use the models trained ahead into DIR from the same inputs; train the others")
    args = parser.parse_args()
    configs = {name: path for name, path in CONFIGS.items() if name not in args.skip}
    if args.train_ahead:
        train_ahead(configs, args.train_ahead)
        return 0

    heldout = {part: load_examples(heldout_path(part)) for part in PARTS}
    dev = heldout["dev"]
    rest_messages = [text for text, _ in dev[:: max(1, len(dev) // args.messages)]][: args.messages]
    accuracy: Dict[str, Dict[str, Dict[str, float]]] = {part: {} for part in PARTS}
    timing: Dict[str, Dict[str, float]] = {}
    sweep = None

    training = labelled_training_examples()
    for make_peer in (tfidf_peer, sentence_embedding_peer):
        peer = make_peer(training)
        threshold = peer.tune_threshold(dev)
        print(f"{peer.name}: out-of-scope below similarity {threshold:.3f} (tuned on the dev part)", flush=True)
        for part in PARTS:
            accuracy[part][peer.name] = accuracy_figures(peer.parse_all(heldout[part]))

    with tempfile.TemporaryDirectory() as tmp:
        ahead = {}
        for name, path in configs.items():
            if args.models_from and (seconds := trained_ahead(name, training_inputs_digest(path),
                                                              args.models_from)) is not None:
                shutil.copy(args.models_from / f"{slug(name)}.tar.gz", tmp)
                ahead[name] = seconds
                print(f"{name}: the model trained ahead in {args.models_from} ({seconds:.0f} s)", flush=True)
        to_train = {name: path for name, path in configs.items() if name not in ahead}
        # Training is single-threaded (deterministic TensorFlow), so two configs train at once,
        # one per core, the longest (stock) first.
        if to_train:
            names = ", ".join(f"{name} ({path.relative_to(PROJECT_ROOT)})" for name, path in to_train.items())
            print(f"Training {names} ...", flush=True)
        train_seconds = {**train_all(to_train, Path(tmp)), **ahead}
        models = {name: Path(tmp) / f"{slug(name)}.tar.gz" for name in configs}
        for name, model in models.items():
            agent = load_agent(str(model))
            for part in PARTS:
                parses, _ = asyncio.run(parse_all(agent, heldout[part]))
                accuracy[part][name] = accuracy_figures(parses)
                if part == "dev" and name == "this project":
                    sweep = parses
            del agent
        load_seconds = load_times(models, args.rounds)
        launches = [rest_reply_ms(models, rest_messages, args.rest_rounds, [5305, 5405, 5505])
                    for _ in range(args.launches)]
        timing = {name: {"training time (s)": train_seconds[name], "model load time (s)": load_seconds[name],
                         "median REST reply (ms)": statistics.median(
                             [ms for launch in launches for ms in launch[name]])} for name in models}

    for part in PARTS:
        sizes = f"{len(heldout[part])} messages"
        label = "frozen: scored only when closing an issue" if part == "frozen" else "dev: studied"
        print_table(f"Held-out {part} part ({sizes}; {label})", accuracy[part], list(ACCURACY_FIGURES))
        ours = accuracy[part].get("this project")
        if ours:
            leads = {name: (ours["FAQ answer accuracy"] - figures["FAQ answer accuracy"]) * 100
                     for name, figures in accuracy[part].items() if name != "this project"}
            print("\nFAQ answer accuracy, this project's lead in points: "
                  + ", ".join(f"{name} {lead:+.1f}" for name, lead in leads.items()))

    print_table(f"Timings (REST: median of {args.launches} launches x {args.rest_rounds} rounds x "
                f"{len(rest_messages)} messages)",
                timing, ["training time (s)", "model load time (s)", "median REST reply (ms)"])
    base, ours = timing.get("before the encoder"), timing.get("this project")
    if base and ours:
        print(f"model load time (s): this project / before the encoder = "
              f"{ours['model load time (s)'] / base['model load time (s)']:.2f}")
        per_launch = [statistics.median(a / b for a, b in zip(launch["this project"], launch["before the encoder"],
                                                               strict=True)) for launch in launches]
        print(f"median REST reply (ms): this project / before the encoder = {statistics.median(per_launch):.2f} "
              f"(the launches' median ratios {', '.join(f'{ratio:.2f}' for ratio in per_launch)}; "
              f"ratio of the medians {ours['median REST reply (ms)'] / base['median REST reply (ms)']:.2f})")

    if sweep:
        print("\nFallback threshold sweep on this project's model (dev part):")
        print("  threshold  OOS prec.  OOS recall  FAQ answer acc.")
        for row in threshold_sweep(sweep, [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
