"""Writing to the store never makes pyarrow import pandas (a third of a second of CPU, and
its memory, in every process that writes), and pandas still works where it is asked for."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

WRITE_EVERY_TABLE = """
import sys
import numpy as np
from columnist.records import FrameRecord
from columnist.store import connect
from columnist.vocab.schema import parse_vocabulary
from tests.streams.store.test_store import VOCAB, make_batch

store = connect("chdb://" + sys.argv[1])
vocab = parse_vocabulary(VOCAB)
store.apply_vocabulary(vocab, "mock")
store.write(make_batch(vocab))
store._insert_frames([FrameRecord("img0", "img0#t=1.0", 1.0)])
store.save_prompt_embeddings("mock", [("", "a photo")], np.ones((1, 4), np.float32))
store.save_search_phrase("mock", "the Moon", np.ones(4, np.float32), 100.0, 0.2, 0.05)
counts = [store.scalar(f"SELECT count() FROM columnist.{t}") for t in
          ("images", "image_embedding", "feature_image_attribute", "video_frames", "prompt_embedding",
           "search_phrase", "vocabulary", "vocabulary_applied")]
assert all(counts), counts
print("pandas imported" if "pandas" in sys.modules else "no pandas")
import pyarrow as pa
print(type(pa.table({"x": pa.array([1], pa.int8())}).to_pandas()).__name__)
"""


def test_writing_every_table_imports_no_pandas_and_pandas_still_works(tmp_path):
    done = subprocess.run([sys.executable, "-c", WRITE_EVERY_TABLE, str(tmp_path / "db")], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["no", "pandas", "DataFrame"]
