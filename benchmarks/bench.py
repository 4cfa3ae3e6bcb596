"""`make bench`: this project against the stock `rasa init` config trained on the same data,
each served by the same processes (`scripts/services.py`: the action server and one Rasa server,
the SQLite tracker store), under the load the speed issue describes.

Per model and round:
- ready: seconds from starting the action server to the Rasa server answering, model loaded;
- sequential: SEQUENTIAL_CONVERSATIONS new conversations, one at a time, turn 1 and turn 2
  each timed (p50, p95, p99);
- load: CLIENTS clients for LOAD_SECONDS, each continuing its own conversation, a message as
  soon as the last one was answered: messages/s, p50, p95, p99, fewest and most turns a client got;
- long: one conversation of LONG_TURNS turns, p50 of turns 1-10 against turns 140-150;
- RSS of each process (and the processes it started) after the load;
- RSS of the default profile: every process `make run` starts (scripts/run_all.py, its
  supervisor included, on its embedded defaults in a scratch directory), after a few turns.
The messages are the held-out dev part's, in a fixed order. The models take turns going first
in successive rounds, so slow drift of the machine hits both alike; each figure is the median
over the rounds, and the table gives this project / stock for each.
"""
import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.nlu_eval import heldout_path, load_examples  # noqa: E402
from scripts.services import PROJECT_ROOT, Services, _process_group, rasa_services  # noqa: E402

SEQUENTIAL_CONVERSATIONS = 40
CLIENTS = 16
LOAD_SECONDS = 60.0
LONG_TURNS = 150
PROFILE_TURNS = 20
EARLY, LATE = range(0, 10), range(139, 150)  # turns 1-10 and 140-150, counted from 0
TIMEOUT = aiohttp.ClientTimeout(total=120)
Figures = Dict[str, float]


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def process_rss_mb(pid: int) -> float:
    """Resident memory of the process and every process in its group, in MB."""
    return sum(process_rss_mb_alone(member) for member in _process_group(pid))


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of the process and all its descendants, in MB."""
    children: Dict[int, List[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, total = [pid], 0.0
    while tree:
        member = tree.pop()
        tree += children.get(member, [])
        total += process_rss_mb_alone(member)
    return total


def process_rss_mb_alone(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024


async def say(session: aiohttp.ClientSession, url: str, sender: str, text: str) -> float:
    """Milliseconds until the reply to one message; a reply that is not 200 stops the run."""
    start = time.perf_counter()
    async with session.post(url, json={"sender": sender, "message": text}) as reply:
        await reply.read()
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status} for {text!r}")
    return (time.perf_counter() - start) * 1000


async def sequential(url: str, messages: List[str]) -> Figures:
    first, second = [], []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for index in range(SEQUENTIAL_CONVERSATIONS):
            sender = f"bench-{uuid.uuid4()}"
            first.append(await say(session, url, sender, messages[2 * index % len(messages)]))
            second.append(await say(session, url, sender, messages[(2 * index + 1) % len(messages)]))
    figures = {}
    for turn, timings in (("turn 1", first), ("turn 2", second)):
        for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            figures[f"sequential {turn} {name} (ms)"] = percentile(timings, share)
    return figures


async def under_load(url: str, messages: List[str], seconds: float) -> Figures:
    deadline = time.perf_counter() + seconds
    timings: List[float] = []
    turns = [0] * CLIENTS

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        sender, position = f"bench-load-{number}-{uuid.uuid4()}", number * len(messages) // CLIENTS
        while time.perf_counter() < deadline:
            timings.append(await say(session, url, sender, messages[position % len(messages)]))
            turns[number] += 1
            position += 1

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
        await asyncio.gather(*(client(number, session) for number in range(CLIENTS)))
    elapsed = time.perf_counter() - start
    return {"load messages/s": len(timings) / elapsed, "load p50 (ms)": percentile(timings, 0.5),
            "load p95 (ms)": percentile(timings, 0.95), "load p99 (ms)": percentile(timings, 0.99),
            "load fewest turns a client got": min(turns), "load most turns a client got": max(turns),
            "load most / fewest turns": max(turns) / max(min(turns), 1)}


async def long_conversation(url: str, messages: List[str]) -> Figures:
    sender = f"bench-long-{uuid.uuid4()}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        timings = [await say(session, url, sender, messages[turn % len(messages)]) for turn in range(LONG_TURNS)]
    early = statistics.median(timings[turn] for turn in EARLY)
    late = statistics.median(timings[turn] for turn in LATE)
    return {"long: p50 of turns 1-10 (ms)": early, "long: p50 of turns 140-150 (ms)": late,
            "long: turns 140-150 / turns 1-10": late / early}


def measure(model: Path, port: int, messages: List[str], load_seconds: float) -> Figures:
    url = f"http://localhost:{port}/webhooks/rest/webhook"
    with tempfile.TemporaryDirectory() as scratch:
        services = rasa_services(str(model), port, port + 50, f"{scratch}/tracker.db")
        start = time.perf_counter()
        with Services(services, log=open(os.devnull, "w")):
            figures: Figures = {"ready (s)": time.perf_counter() - start}
            figures.update(asyncio.run(sequential(url, messages)))
            figures.update(asyncio.run(under_load(url, messages, load_seconds)))
            figures.update(asyncio.run(long_conversation(url, messages)))
            rss = {service.name: process_rss_mb(service.process.pid) for service in services}
    for name, megabytes in rss.items():
        figures[f"RSS {name} (MB)"] = megabytes
    figures["RSS total (MB)"] = sum(rss.values())
    figures["RSS default profile, every make run process (MB)"] = default_profile_rss_mb(model, port + 100, messages)
    return figures


def default_profile_rss_mb(model: Path, port: int, messages: List[str]) -> float:
    """`make run`'s processes, started as it starts them, after PROFILE_TURNS turns."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "MODEL": str(model), "RASA_PORT": str(port), "ACTION_PORT": str(port + 50),
               "STAFF_INBOX_PORT": str(port + 60), "DEMO_PORT": str(port + 70),
               "ACTION_ENDPOINT_URL": f"http://localhost:{port + 50}/webhook",
               "TRACKER_DB": f"{scratch}/tracker.db", "DATABASE_URL": f"sqlite:///{scratch}/handoffs.db"}
        supervisor = subprocess.Popen([sys.executable, "scripts/run_all.py"], cwd=PROJECT_ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://localhost:{port}/webhooks/rest/webhook"
            asyncio.run(profile_turns(url, messages, supervisor))
            return process_tree_rss_mb(supervisor.pid)
        finally:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=60)


async def profile_turns(url: str, messages: List[str], supervisor: subprocess.Popen) -> None:
    """Waits for the chat to answer, then holds PROFILE_TURNS turns."""
    sender = f"bench-profile-{uuid.uuid4()}"
    deadline = time.perf_counter() + 300
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        while True:
            if supervisor.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("make run's processes did not start")
            try:
                async with session.post(url, json={"sender": sender, "message": messages[0]}) as reply:
                    if reply.status == 200 and await reply.json():
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
        for text in messages[1:PROFILE_TURNS]:
            await say(session, url, sender, text)


def markdown_table(results: Dict[str, Figures], names: Tuple[str, ...]) -> str:
    if len(names) == 1:
        rows = ["| figure | this project |", "|---|---|"]
        rows += [f"| {figure} | {value:,.1f} |" for figure, value in results[names[0]].items()]
        return "\n".join(rows)
    ours, stock = names
    rows = ["| figure | this project | stock `rasa init` | this project / stock |", "|---|---|---|---|"]
    for figure in results[ours]:
        a, b = results[ours][figure], results[stock][figure]
        ratio = f"{a / b:.2f}" if b else ""
        rows.append(f"| {figure} | {a:,.1f} | {b:,.1f} | {ratio} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="this project's trained model")
    parser.add_argument("--stock-model", type=Path,
                        help="the stock `rasa init` config's model, trained on the same data (left out: "
                             "this project alone)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=5605)
    parser.add_argument("--load-seconds", type=float, default=LOAD_SECONDS, help="shorter for a quick look")
    args = parser.parse_args()
    messages = [text for text, _ in load_examples(heldout_path("dev"))]
    models = {"this project": args.model, **({"stock": args.stock_model} if args.stock_model else {})}
    rounds: Dict[str, List[Figures]] = {name: [] for name in models}
    for number in range(args.rounds):
        order = list(models) if number % 2 == 0 else list(reversed(models))
        for name in order:
            figures = measure(models[name], args.port, messages, args.load_seconds)
            rounds[name].append(figures)
            print(f"round {number + 1}, {name}: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()),
                  flush=True)
    results = {name: {figure: statistics.median(run[figure] for run in runs) for figure in runs[0]}
               for name, runs in rounds.items()}
    print(f"\nMedians of {args.rounds} rounds ({CLIENTS} clients x {args.load_seconds:.0f} s under load, "
          f"{SEQUENTIAL_CONVERSATIONS} sequential conversations, one of {LONG_TURNS} turns):\n")
    print(markdown_table(results, tuple(models)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
