"""`make test-nlu`: held-out figures for the trained model; fails below the bar.

The headline is what a visitor experiences: FAQ answer accuracy (the right intent and the
right topic), with out-of-scope precision and recall. `--part dev` scores the part that may
be studied; the frozen part is scored only when closing an issue (see the README).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.nlu_eval import PARTS, evaluate_model, heldout_path, load_examples  # noqa: E402

GATED = ("FAQ answer accuracy", "out-of-scope precision", "out-of-scope recall")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--part", choices=PARTS, action="append", help="default: dev")
    parser.add_argument("--min", type=float, default=0.95, help="bar for each gated figure")
    parser.add_argument("--show-misses", action="store_true", help="list misses (never for a frozen part)")
    args = parser.parse_args()

    failed = []
    for part in args.part or ["dev"]:
        path = heldout_path(part)
        scores, _ = evaluate_model(args.model, load_examples(path))
        figures = scores.figures()
        print(f"Held-out {part} part ({path.name}): {scores.n_messages} messages, "
              f"{scores.n_faq} FAQ, {scores.n_oos} out of scope")
        for name, value in figures.items():
            gated = name in GATED
            gate = f"  (bar {args.min:.0%})" if gated else ""
            print(f"  {name:<28} {value:6.1%}{gate}")
            if gated and value < args.min:
                failed.append(f"{part}: {name} {value:.1%}")
        if args.show_misses and part != "frozen":
            for text, label, got in scores.errors:
                print(f"  miss: {label:<36} got {got:<44} {text}")
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    print(f"OK: every gated figure at or above {args.min:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
