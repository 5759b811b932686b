"""A model migration's re-embed rate: the job `columnist model migrate` runs (and each worker
runs beside ingest), on images already stored with another model.

The images are tagged with the mock model first (no decoding cost worth counting), then the
store moves to MODEL: every image is read again from its file, decoded, encoded and scored
for the space vocabulary (50 attributes), and written beside the old rows. Run on its own
(one embedded database a process) by bench/service.py, which compares the rate with the
service's ingest rate on the same kind of images in the same run; or by hand:

    python -m bench.reembed --model .columnist/models/vit-b-32/ov-int8 --runtime openvino FILES...

Prints one JSON object: images, seconds, img_s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def reembed_rate(model: str, runtime: str, files: list[Path], db: Path, batch_size: int = 32) -> dict:
    from columnist import model_change
    from columnist.models.mock import MockEncoder
    from columnist.models.registry import load_encoder
    from columnist.prompt_cache import PromptCache
    from columnist.settings import Settings
    from columnist.store import connect
    from columnist.tagger import tag
    from columnist.vocab import load_vocabulary_arg
    from columnist.vocab.prompts import text_embeddings
    from columnist.worker.fetch import fetch, policy_from

    shutil.rmtree(db, ignore_errors=True)
    store = connect(f"chdb://{db}")
    vocab = load_vocabulary_arg("space")
    tag([(path.resolve().as_uri(), path) for path in files], vocab, MockEncoder(), store, batch_size=batch_size)
    target = load_encoder(model, batch_size=batch_size, runtime=runtime)
    model_change.begin(store, target, model)
    texts = [(v, text_embeddings(PromptCache(target, store), v)) for v in store.applied_vocabularies()]
    policy = policy_from(Settings(), roots=sorted({path.resolve().parent for path in files}))
    job = model_change.Reembedder(store, target, lambda: texts, lambda uri: fetch(uri, policy),
                                  batch_size=batch_size)
    start = time.perf_counter()
    report = job.run()
    seconds = time.perf_counter() - start
    store.close()
    assert report.images == len(files) and not report.missing, report
    return {"images": report.images, "seconds": seconds, "img_s": report.images / seconds, "model": model,
            "runtime": runtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--db", type=Path, default=REPO / ".columnist" / "bench" / "db-reembed")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    print(json.dumps(reembed_rate(args.model, args.runtime, args.files, args.db)))


if __name__ == "__main__":
    main()
