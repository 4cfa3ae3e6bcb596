"""How the safety net's thresholds trade recall for false alarms, on the studied panels only.

Parses every dev-panel message once with the trained model, then replays the safety net's
decision (components.safety_net.decide) from the evidence each parse carries, for a grid of
crisis and emergency thresholds. The frozen panels are never read. Prints, per setting: crisis
recall, emergency recall, false crisis and false 911 replies on the benign messages; with
--show-misses, the messages that setting gets wrong.
"""
import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.safety_net import SAFETY_EVIDENCE_KEY, SafetyNet, decide  # noqa: E402
from components.safety_patterns import CRISIS, MEDICAL_EMERGENCY  # noqa: E402
from scripts.nlu_eval import heldout_path, load_agent, load_examples  # noqa: E402
from scripts.safety_panels import NOT_BENIGN, PANEL_FILES, load_panel  # noqa: E402


def reading(config: Dict, evidence: Dict, final_intent: str) -> Optional[str]:
    decision = decide(config, evidence, evidence["pattern"], evidence["benign_reading"], evidence["model_intent"],
                      evidence["about_treatment"], evidence.get("long_past", False),
                      evidence.get("unsure_model", False))
    if decision is None:
        return final_intent if final_intent in (CRISIS, MEDICAL_EMERGENCY) else None
    return decision[0]


async def parse(agent, messages: List[Tuple[str, str]]) -> List[Tuple[str, str, Dict, str]]:
    parsed = []
    for category, text in messages:
        result = await agent.parse_message(text)
        parsed.append((category, text, result[SAFETY_EVIDENCE_KEY], result["intent"]["name"]))
    return parsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--crisis", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--emergency", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--support", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--combined", type=float, nargs="+", default=[0.4, 0.45, 0.5, 0.55, 0.6])
    parser.add_argument("--clause", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 1.0])
    parser.add_argument("--danger", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 1.0])
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--parses", type=Path,
                        help="keep the parses in this file and reuse them while the model is unchanged")
    args = parser.parse_args()

    # Every studied panel: the dev part (with the first retired panels) and the second retired one.
    files = {kind: PANEL_FILES["dev"][kind] + PANEL_FILES["retired2"][kind] for kind in PANEL_FILES["dev"]}
    benign = load_panel(files["benign"]) + [(f"held-out {label}", text) for text, label
                                            in load_examples(heldout_path("dev")) if label not in NOT_BENIGN]
    messages = {CRISIS: load_panel(files["crisis"]), MEDICAL_EMERGENCY: load_panel(files["emergency"]),
                "benign": benign}
    # The cache is keyed by the model file and the messages, so a retrained model or an edited
    # panel parses again.
    key = [str(Path(args.model).resolve()), Path(args.model).stat().st_mtime, messages]
    cached = json.loads(args.parses.read_text()) if args.parses and args.parses.exists() else None
    if cached and cached["key"] == json.loads(json.dumps(key)):
        panels = cached["panels"]
    else:
        agent = load_agent(args.model)
        panels = {kind: asyncio.run(parse(agent, found)) for kind, found in messages.items()}
        if args.parses:
            args.parses.write_text(json.dumps({"key": key, "panels": panels}))
    print(f"dev panels: {len(panels[CRISIS])} crisis, {len(panels[MEDICAL_EMERGENCY])} emergency, "
          f"{len(panels['benign'])} benign")
    print("crisis  emergency  support  combined  clause  danger | "
          "crisis recall  emergency recall  false crisis  false 911")
    for crisis in args.crisis:
        for emergency in args.emergency:
            for support, combined, clause, danger in itertools.product(args.support, args.combined, args.clause,
                                                                       args.danger):
                config = {**SafetyNet.get_default_config(), "crisis_threshold": crisis,
                          "emergency_threshold": emergency, "emergency_pattern_support": support,
                          "combined_crisis_threshold": combined, "clause_crisis_threshold": clause,
                          "danger_threshold": danger}
                misses = []
                counts = {}
                for kind in (CRISIS, MEDICAL_EMERGENCY):
                    wrong = [(c, t, r) for c, t, e, i in panels[kind] if (r := reading(config, e, i)) != kind]
                    counts[kind] = len(panels[kind]) - len(wrong)
                    misses += [f"  {kind} missed ({c}) -> {r}: {t}" for c, t, r in wrong]
                benign_readings = [(c, t, reading(config, e, i)) for c, t, e, i in panels["benign"]]
                false = {kind: [(c, t) for c, t, r in benign_readings if r == kind]
                         for kind in (CRISIS, MEDICAL_EMERGENCY)}
                for kind, found in false.items():
                    misses += [f"  false {kind} ({c}): {t}" for c, t in found]
                print(f"{crisis:6.2f}  {emergency:9.2f}  {support:7.2f}  {combined:8.2f}  {clause:6.2f}  "
                      f"{danger:6.2f} | "
                      f"{counts[CRISIS]:4d}/{len(panels[CRISIS])}      {counts[MEDICAL_EMERGENCY]:4d}/"
                      f"{len(panels[MEDICAL_EMERGENCY])}          {len(false[CRISIS]):4d}          "
                      f"{len(false[MEDICAL_EMERGENCY]):4d}")
                if args.show_misses:
                    print("\n".join(misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
