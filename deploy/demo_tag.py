"""`make demo-tag`: the batch path without Kafka, on the sample photos, start to finish.

Tags the sample photos into an embedded database of its own, fits a calibration to what the
model says of them (unlabelled: a two-Gaussian mixture), applies it as version 2 (re-scored
from the stored embeddings, nothing decoded), and prints scores and tiers. tiny-clip has random
weights: its scores carry no meaning, and the fit only spreads them over the tiers so that
accepted, tentative and rejected can be seen at work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".columnist"
PHOTOS = REPO / "tests" / "data" / "photos"
NOTE = ("note: tiny-clip has random weights, so these numbers show the mechanism, not meaning; "
        "pull a real model for labels (README: Getting a real model)")


def columnist(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "columnist", *args], cwd=REPO, check=True)


def fitted_copy(vocabulary: Path, db: str) -> Path:
    """A copy of space.yaml with a calibration fitted to ``db``'s stored embeddings, as version 2."""
    copy = STATE / "demo-space.yaml"
    shutil.copy(vocabulary, copy)
    fitted = subprocess.run([sys.executable, "-m", "columnist", "calibrate", "--vocab", str(copy), "--write", "--db", db],
                            cwd=REPO, check=True, capture_output=True, text=True)
    print(next(line for line in fitted.stdout.splitlines() if line.startswith("suggested")), flush=True)
    copy.write_text(re.sub(r"^version: \d+", "version: 2", copy.read_text(), count=1, flags=re.M))
    return copy


def main() -> None:
    db_path = STATE / "demo-tag-db"
    shutil.rmtree(db_path, ignore_errors=True)
    STATE.mkdir(exist_ok=True)
    db = f"chdb://{db_path}"
    print("\n== tagging the sample photos (tiny-clip, vocab/space.yaml)", flush=True)
    columnist("tag", str(PHOTOS), "--collection", "samples", "--vocab", "vocab/space.yaml", "--db", db)
    print("\n== fitting a calibration to them, applied as space v2 (re-scored from stored embeddings)", flush=True)
    copy = fitted_copy(REPO / "vocab" / "space.yaml", db)
    columnist("replay", "--vocab", str(copy), "--db", db)
    print("\n== scores, and the tiers they fall in", flush=True)
    columnist("query", "--db", db, "SELECT image_id, round(earth, 3) AS earth, round(moon, 3) AS moon, "
              "round(astronaut, 3) AS astronaut, round(spacewalk, 3) AS spacewalk FROM columnist.image_columns "
              "ORDER BY image_id")
    columnist("query", "--db", db, "SELECT tier, count() AS scores FROM columnist.image_attribute_tier "
              "GROUP BY tier ORDER BY tier")
    print(NOTE)


if __name__ == "__main__":
    main()
