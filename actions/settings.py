"""Settings from environment variables, with safe defaults for a local run."""
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CLINIC_FILE = Path(os.environ.get("CLINIC_FILE", PROJECT_ROOT / "clinic.yml"))

# How sure the ResponseSelector must be before an FAQ answer follows a safety reply.
FAQ_ALONGSIDE_MIN_CONFIDENCE = float(os.environ.get("FAQ_ALONGSIDE_MIN_CONFIDENCE", "0.6"))
