"""What a crash, a kill -9 or a hand-made write can leave in a store: found, and mended.

Rows are written embedding first, scores next, the ``images`` row last, so an image row means
the rest is there, and the wide views join on it: a reader never sees a half-written image.
What a killed write leaves is an *orphan*: an embedding or scores without their image row.
Younger than GRACE_S they may be another worker's write in progress, so only older ones count.

Found, per store: orphan embeddings and scores; images without an embedding, and videos
without their frames' (nothing to score them from: publish or tag them again). Per applied
vocabulary: images missing a score of a current attribute, scores older than their
attribute's current definition (stale), and scores of attributes the vocabulary no longer
has. ``mend`` deletes orphans and removed attributes' scores and re-scores the missing and
stale ones in the engine from the stored embeddings (the replay's statements): nothing is
decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

    from columnist.store import Statements
    from columnist.store.replay import Replayer
    from columnist.vocab.schema import Vocabulary

GRACE_S = 600
"""Orphans younger than this may be a write in progress (another worker's): left alone."""
SAMPLE = 5


@dataclass
class VocabularyFindings:
    name: str
    version: int
    missing: int = 0
    """Images with an embedding that lack a score of a current attribute."""
    stale: int = 0
    """Scores older than their attribute's current definition (or newer than the applied version)."""
    removed: int = 0
    """Scores of attributes the applied version no longer has."""
    valid_from: dict[str, int] = field(default_factory=dict)
    """Per attribute code, the first version whose definition it still has."""


@dataclass
class Findings:
    orphan_embeddings: int = 0
    orphan_scores: int = 0
    images_without_embedding: int = 0
    content_differs: int = 0
    """Images whose embedding was made from other content than their row names (a re-publish
    killed between the two writes): publish or tag them again."""
    videos_missing_frames: int = 0
    """Videos with no sampled frame, or a frame without an embedding: publish or tag them again."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    vocabularies: list[VocabularyFindings] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.orphan_embeddings or self.orphan_scores or self.images_without_embedding
                    or self.content_differs or self.videos_missing_frames
                    or any(v.missing or v.stale or v.removed for v in self.vocabularies))


LIVE = ("(image_id IN (SELECT image_id FROM columnist.images) OR image_id IN (SELECT frame_id FROM "
        "columnist.video_frames WHERE video_id IN (SELECT image_id FROM columnist.images)))")
"""Ids a reader may see: images and videos with their row, and the frames of stored videos."""
ORPHAN_EMBEDDINGS = ("FROM columnist.image_embedding WHERE NOT " + LIVE +
                     " AND created_at < now64(3) - INTERVAL {grace:UInt32} SECOND")
ORPHAN_SCORES = ("FROM columnist.feature_image_attribute WHERE NOT " + LIVE +
                 " AND updated_at < now64(3) - INTERVAL {grace:UInt32} SECOND")
ORPHAN_FRAMES = ("FROM columnist.video_frames WHERE video_id NOT IN (SELECT image_id FROM columnist.images) "
                 "AND created_at < now64(3) - INTERVAL {grace:UInt32} SECOND")
COMPLETE = ("SELECT image_id FROM columnist.feature_image_attribute FINAL WHERE vocab_name = {v:String} "
            "AND model = {m:String} AND attribute IN {codes:Array(String)} AND " + LIVE +
            " GROUP BY image_id HAVING uniqExact(attribute) = length({codes:Array(String)})")
MISSING = ("FROM columnist.image_embedding FINAL WHERE model = {m:String} AND " + LIVE +
           " AND image_id NOT IN (" + COMPLETE + ")")
STALE = ("FROM columnist.feature_image_attribute FINAL WHERE vocab_name = {v:String} AND model = {m:String} "
         "AND indexOf({codes:Array(String)}, attribute) > 0 "
         "AND (vocab_version < {since:Array(UInt32)}[indexOf({codes:Array(String)}, attribute)] "
         "     OR vocab_version > {version:UInt32})")
VIDEOS_MISSING_FRAMES = ("FROM columnist.images FINAL WHERE kind = 'video' AND (image_id NOT IN (SELECT video_id "
                         "FROM columnist.video_frames) OR image_id IN (SELECT video_id FROM columnist.video_frames "
                         "WHERE frame_id NOT IN (SELECT image_id FROM columnist.image_embedding WHERE model = {m:String})))")
"""Videos a reader sees whose scores lack a frame (a video's embeddings are its frames')."""
REMOVED = "FROM columnist.feature_image_attribute WHERE vocab_name = {v:String} AND attribute NOT IN {codes:Array(String)}"


def count_orphans(store: "Statements", grace: int = GRACE_S) -> tuple[int, int]:
    return (store.scalar("SELECT count() " + ORPHAN_EMBEDDINGS, {"grace": grace}),
            store.scalar("SELECT count() " + ORPHAN_SCORES, {"grace": grace}))


def delete_orphans(store: "Statements", grace: int = GRACE_S) -> tuple[int, int]:
    """Delete orphan scores and embeddings older than ``grace`` seconds; how many of each."""
    embeddings, scores = count_orphans(store, grace)
    if scores:
        store.command("DELETE " + ORPHAN_SCORES, {"grace": grace})
    if embeddings:
        store.command("DELETE " + ORPHAN_EMBEDDINGS, {"grace": grace})
    if store.scalar("SELECT count() " + ORPHAN_FRAMES, {"grace": grace}):
        store.command("DELETE " + ORPHAN_FRAMES, {"grace": grace})
    return embeddings, scores


def find(store: "Statements", model: str, vocabularies: list["Vocabulary"], grace: int = GRACE_S) -> Findings:
    found = Findings()
    found.orphan_embeddings, found.orphan_scores = count_orphans(store, grace)
    found.examples["orphan embeddings"] = _sample(store, "SELECT DISTINCT image_id " + ORPHAN_EMBEDDINGS, {"grace": grace})
    without = ("FROM columnist.images FINAL WHERE kind != 'video' AND image_id NOT IN "  # a video's are its frames'
               "(SELECT image_id FROM columnist.image_embedding WHERE model = {m:String})")
    found.images_without_embedding = store.scalar("SELECT count() " + without, {"m": model})
    found.examples["images without an embedding"] = _sample(store, "SELECT image_id " + without, {"m": model})
    differs = ("FROM (SELECT image_id, sha256 FROM columnist.images FINAL WHERE kind != 'video') AS i INNER JOIN "
               "(SELECT image_id, sha256 FROM columnist.image_embedding FINAL WHERE model = {m:String}) AS e "
               "ON e.image_id = i.image_id WHERE e.sha256 != i.sha256")
    found.content_differs = store.scalar("SELECT count() " + differs, {"m": model})
    found.examples["images whose embedding is of other content"] = _sample(store, "SELECT i.image_id " + differs,
                                                                            {"m": model})
    found.videos_missing_frames = store.scalar("SELECT count() " + VIDEOS_MISSING_FRAMES, {"m": model})
    found.examples["videos missing a frame's embedding"] = _sample(store, "SELECT image_id " + VIDEOS_MISSING_FRAMES,
                                                                   {"m": model})
    for vocab in vocabularies:
        since = valid_from(store, vocab, model)
        params = _params(vocab, model, since)
        result = VocabularyFindings(vocab.name, vocab.version, valid_from=since)
        result.missing = store.scalar("SELECT count() " + MISSING, params)
        result.stale = store.scalar("SELECT count() " + STALE, params)
        result.removed = store.scalar("SELECT count() " + REMOVED, params)
        found.examples[f"{vocab.name}: images missing scores"] = _sample(store, "SELECT image_id " + MISSING, params)
        found.vocabularies.append(result)
    return found


def mend(store: "Statements", replayer: "Replayer", vocabularies: list["Vocabulary"],
         texts: Callable[["Vocabulary"], dict[str, "np.ndarray"]], model: str, grace: int = GRACE_S,
         chunk: int = 20_000) -> dict[str, int]:
    """Delete orphans and removed attributes' scores; re-score images missing a score or
    holding a stale one (every attribute of the vocabulary, from the stored embedding)."""
    done = dict(zip(("orphan embeddings deleted", "orphan scores deleted"), delete_orphans(store, grace)))
    for vocab in vocabularies:
        params = _params(vocab, model, valid_from(store, vocab, model))
        removed = store.scalar("SELECT count() " + REMOVED, params)
        if removed:
            store.command("DELETE " + REMOVED, params)
        ids = sorted({row[0] for row in store.query("SELECT image_id " + MISSING, params)[1]}
                     | {row[0] for row in store.query("SELECT DISTINCT image_id " + STALE, params)[1]})
        rescored = 0
        for start in range(0, len(ids), chunk):
            rescored += replayer.rescore_images(vocab, texts(vocab), ids[start:start + chunk])
        done[f"{vocab.name}: removed attributes' scores deleted"] = removed
        done[f"{vocab.name}: images re-scored"] = len(ids)
        done[f"{vocab.name}: scores written"] = rescored
    return done


def valid_from(store: "Statements", vocab: "Vocabulary", model: str) -> dict[str, int]:
    """Per code of ``vocab``, the first version since which its definition for ``model``
    (prompts, calibration, rule) is unchanged, read from the ``vocabulary`` table's history."""
    _, rows = store.query(
        "SELECT code, vocab_version, prompts, centre, scale, rule FROM columnist.vocabulary FINAL "
        "WHERE vocab_name = {v:String} AND model = {m:String} AND vocab_version <= {version:UInt32} "
        "ORDER BY code, vocab_version", {"v": vocab.name, "m": model, "version": vocab.version})
    since: dict[str, int] = {}
    last: dict[str, tuple] = {}
    for code, version, prompts, centre, scale, rule in rows:
        signature = (tuple(prompts), centre, scale, rule)
        if last.get(code) != signature:
            since[code] = version
            last[code] = signature
    return {code: since.get(code, vocab.version) for code in vocab.codes}


def _params(vocab: "Vocabulary", model: str, since: dict[str, int]) -> dict:
    codes = list(vocab.codes)
    return {"v": vocab.name, "m": model, "codes": codes, "since": [since[c] for c in codes], "version": vocab.version}


def _sample(store: "Statements", sql: str, params: dict) -> list[str]:
    return [row[0] for row in store.query(f"{sql} LIMIT {SAMPLE}", params)[1]]
