"""Builds the spaCy pipeline the NLU uses: blank English with lookup lemmas.

Everything comes from installed packages (spaCy's English tokenizer rules and
spacy-lookups-data's lemma table), so nothing is downloaded at run time.
Usage: python scripts/build_spacy_pipeline.py OUTPUT_DIR
"""
import sys
from pathlib import Path

import spacy


def build(output_dir: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()  # loads the lemma table from spacy-lookups-data
    nlp.meta["name"] = "lookup_lemmas"
    nlp.meta["description"] = "Blank English tokenizer with lookup lemmas (spacy-lookups-data)."
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output_dir)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
