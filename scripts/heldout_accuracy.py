"""`make test-nlu`: held-out intent and response-selector accuracy; fails below the bar."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.nlu_eval import evaluate_model, load_examples  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--min-accuracy", type=float, default=0.90)
    args = parser.parse_args()

    scores, _ = evaluate_model(args.model, load_examples())
    print(f"Held-out NLU set: {scores.n_messages} messages ({scores.n_faq} FAQ, {scores.n_oos} out of scope)")
    print(f"  intent accuracy            {scores.intent_accuracy:.1%}")
    print(f"  response-selector accuracy {scores.selector_accuracy:.1%}")
    print(f"  FAQ answer accuracy        {scores.faq_answer_accuracy:.1%}")
    print(f"  out-of-scope precision     {scores.oos_precision:.1%}")
    print(f"  out-of-scope recall        {scores.oos_recall:.1%}")
    for text, label, got in scores.errors:
        print(f"  miss: {label:<32} got {got:<40} {text}")
    failed = [
        name for name, value in (("intent", scores.intent_accuracy), ("response selector", scores.selector_accuracy))
        if value < args.min_accuracy
    ]
    if failed:
        print(f"FAILED: {' and '.join(failed)} accuracy below {args.min_accuracy:.0%}")
        return 1
    print(f"OK: both above {args.min_accuracy:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
