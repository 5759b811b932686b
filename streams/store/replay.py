"""Replay: score new or changed attributes from stored embeddings, inside ClickHouse.

No image is decoded or encoded. The new text embeddings, centres and scales go in as query
parameters; ClickHouse computes logit = logit_scale x dotProduct(embedding, text) and the
sigmoid where the embeddings already are (one INSERT ... SELECT per chunk, ARRAY JOIN over
the affected attributes), then the affected derived attributes from the stored base scores
(least / greatest / 1 - x). Chunks are a hash of image_id; each finished chunk is
checkpointed, so a crash resumes instead of restarting. A final pass re-scores the images
stored since the job's first chunk started: they may have missed their chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from columnist.records import ModelCalibration
from columnist.store.checkpoints import BUCKETS, Checkpoints, buckets_of, chunks_for
from columnist.store.clickhouse import IDENTIFIER
from columnist.vocab.diff import VocabularyDiff
from columnist.vocab.rules import parse_rule, references, to_sql
from columnist.vocab.schema import DerivedAttribute, Vocabulary

if TYPE_CHECKING:
    import numpy as np

    from columnist.store import Statements

INSERT_SCORES = """
INSERT INTO columnist.feature_image_attribute
    (attribute, image_id, score, logit, source, model, vocab_name, vocab_version, updated_at)
"""

# One dotProduct column per attribute ({dots}: `logit_scale x dotProduct(embedding, {t0})`, ...),
# then an ARRAY JOIN over the small arrays of logits, codes, centres and scales. (An ARRAY JOIN
# over the text vectors themselves copied a 512-float array into every output row: 4x slower
# for one attribute, 3x for ten.)
BASE_SQL = """
SELECT {codes:Array(String)}[k], image_id,
       toFloat32(1 / (1 + exp(-(logits[k] - {centres:Array(Float64)}[k]) / {scales:Array(Float64)}[k]))), logits[k],
       {source:String}, {model:String}, {vocab:String}, {version:UInt32}, now64(3)
FROM (
    SELECT image_id, [{dots}] AS logits
    FROM columnist.image_embedding {final}
    WHERE model = {model:String} AND {where}
)
ARRAY JOIN arrayEnumerate(logits) AS k
"""

DERIVED_SQL = """
SELECT rule_value.1, image_id, rule_value.2, nan, 'derived', {model:String}, {vocab:String}, {version:UInt32}, now64(3)
FROM (
    SELECT image_id, arrayFilter(_rule -> _rule.3, [{rules}]) AS rule_value
    FROM (
        SELECT image_id, {columns}
        FROM columnist.feature_image_attribute
        WHERE vocab_name = {vocab:String} AND model = {model:String} AND attribute IN {refs:Array(String)}
          AND image_id IN (SELECT image_id FROM columnist.image_embedding WHERE model = {model:String} AND {where})
        GROUP BY image_id
    )
)
ARRAY JOIN rule_value
"""
"""Derived attributes of one level (none reads another's value) in one statement: each code's
(code, value, every reference present), the latest score of each reference picked by argMax
rather than FINAL (which merged every unmerged part at query time: 2.4 s a statement while a
50-attribute vocabulary was being replayed), one row per code whose references are all there.
The lambda's ``_rule`` starts with what no attribute code can (codes are its columns' names)."""

VIDEO_SQL = """
SELECT f.attribute, fr.video_id, max(f.score), max(f.logit), any(f.source), {model:String}, {vocab:String},
       {version:UInt32}, now64(3)
FROM columnist.feature_image_attribute AS f FINAL
INNER JOIN (SELECT video_id, frame_id FROM columnist.video_frames FINAL) AS fr ON fr.frame_id = f.image_id
WHERE f.vocab_name = {vocab:String} AND f.model = {model:String} AND f.attribute IN {codes:Array(String)}
GROUP BY f.attribute, fr.video_id
"""
"""A video's score per attribute: the maximum over its frames (re-derived after a replay)."""

CHUNK_WHERE = "bucket IN {buckets:Array(UInt8)}"
LATE_WHERE = "toUnixTimestamp64Milli(created_at) > {since_ms:Int64}"
FAILED_ROWS = ("FROM columnist.feature_image_attribute WHERE vocab_name = {vocab:String} AND model = {model:String} "
               "AND vocab_version = {failed:UInt32}")
"""The score rows a given-up vocabulary version wrote (Replayer.restore)."""
MISSING_REMOVED = ("SELECT image_id FROM columnist.image_embedding FINAL WHERE model = {model:String} AND image_id NOT IN "
                   "(SELECT image_id FROM columnist.feature_image_attribute WHERE vocab_name = {vocab:String} "
                   "AND model = {model:String} AND attribute IN {removed:Array(String)} GROUP BY image_id "
                   "HAVING uniqExact(attribute) = length({removed:Array(String)}))")
"""The stored images missing a row of an attribute a given-up version removed: its final pass
deleted them before the change failed (Replayer.restore scores them again)."""


@dataclass
class ReplayReport:
    chunks: int
    chunks_skipped: int
    score_rows: int
    late_score_rows: int


class Replayer:
    """Replays one job: a vocabulary change (job = its content hash) or a backfill.

    ``chunks`` = 0 sizes a job's chunks to about SCORES_PER_CHUNK score rows each (stored
    embeddings x attributes replayed, at most BUCKETS chunks): fewer, larger statements are
    faster (+1 attribute over 1M embeddings: 0.72 s as one statement, 1.4 s as four), but on
    the embedded engine ingest waits while one runs, and more chunks lose less to a crash."""

    SCORES_PER_CHUNK = 10_000_000

    def __init__(self, store: "Statements", model: str, logit_scale: float, source: str, chunks: int = 0,
                 job: str | None = None, clock_slack_ms: int = 5_000, model_calibration: ModelCalibration | None = None):
        self.store, self.model, self.logit_scale, self.source = store, model, logit_scale, source
        self.model_calibration = model_calibration  # the model's default centre and scale (SigLIP's bias)
        self.job = job
        self.clock_slack_ms = clock_slack_ms  # writers' clocks may disagree (created_at is the writer's time)
        self.given = chunks > 0  # COLUMNIST_REPLAY_CHUNKS; else sized to the job (size_for)
        self.embeddings = 0 if self.given else store.scalar(
            "SELECT count() FROM columnist.image_embedding WHERE model = {m:String}", {"m": model})
        self.chunks = max(1, min(BUCKETS, chunks)) if self.given else self._chunks_for(1)

    def _chunks_for(self, attributes: int) -> int:
        return chunks_for(self.embeddings * max(1, attributes), self.SCORES_PER_CHUNK)

    def size_for(self, diff: VocabularyDiff) -> None:
        """Chunks for replaying ``diff``'s attributes (a job already started keeps its own)."""
        if not self.given:
            self.chunks = self._chunks_for(len(diff.rescore))

    def job_of(self, vocab: Vocabulary) -> str:
        return self.job or vocab.content_hash()

    def checkpoints(self, vocab: Vocabulary) -> Checkpoints:
        """The job's checkpoints; its chunk count is the one its first run chose."""
        marks = Checkpoints(self.store, vocab.name, self.job_of(vocab), self.chunks)
        self.chunks = marks.chunks
        return marks

    def forget_checkpoints(self, vocab: Vocabulary) -> None:
        self.checkpoints(vocab).forget()

    def run(self, vocab: Vocabulary, diff: VocabularyDiff, texts: dict[str, "np.ndarray"],
            on_chunk: Callable[[int, int], None] | None = None, start_at: int = 0) -> ReplayReport:
        """Write every affected attribute for every stored embedding of this model, chunk by
        chunk (store.checkpoints: several workers split a job), then the final pass and the
        videos' scores."""
        self.size_for(diff)
        marks = self.checkpoints(vocab)
        rows, mine = marks.run(start_at, lambda chunk: self._replay_chunk(vocab, diff, texts, chunk), on_chunk,
                               fault="after_replay_chunk")
        late = self.final_pass(vocab, diff, texts)
        self.derive_videos(vocab, diff.rescore)
        return ReplayReport(self.chunks, self.chunks - len(mine), rows, late)

    def derive_videos(self, vocab: Vocabulary, codes) -> int:
        """Each video's score for ``codes``: the maximum over its frames' (just re-scored)."""
        if not codes or not self.store.scalar("SELECT count() FROM columnist.video_frames"):
            return 0
        return self._insert(VIDEO_SQL, {"model": self.model, "vocab": vocab.name, "version": vocab.version,
                                        "codes": list(codes)}, count=True)

    def replay_chunk(self, vocab: Vocabulary, diff: VocabularyDiff, texts: dict[str, "np.ndarray"], chunk: int) -> int:
        """One chunk claimed, written and checkpointed, as ``run`` does each chunk it takes."""
        self.size_for(diff)
        marks = self.checkpoints(vocab)
        marks.claim(chunk)
        return marks.do(chunk, lambda c: self._replay_chunk(vocab, diff, texts, c))

    def _replay_chunk(self, vocab: Vocabulary, diff: VocabularyDiff, texts: dict[str, "np.ndarray"], chunk: int) -> int:
        """Score one chunk's images for the affected attributes; return images in the chunk x
        attributes written."""
        base, derived = self._split(vocab, diff.rescore, texts)
        where = {"buckets": buckets_of(chunk, self.chunks)}
        _, counts = self.store.query(
            f"SELECT (SELECT count() FROM columnist.image_embedding FINAL WHERE model = {{model:String}} AND {CHUNK_WHERE}),"
            f" (SELECT count() FROM columnist.image_embedding WHERE model = {{model:String}} AND {CHUNK_WHERE})",
            {"model": self.model, **where})
        images, stored_rows = counts[0]
        # FINAL (reading the newest embedding of an image stored twice) costs half the chunk's
        # time; without duplicates it changes nothing. One written meanwhile is the final pass's.
        self._write(vocab, base, derived, texts, CHUNK_WHERE, where, count=False, final=images != stored_rows)
        return images * (len(base) + len(derived))

    def final_pass(self, vocab: Vocabulary, diff: VocabularyDiff, texts: dict[str, "np.ndarray"]) -> int:
        """Re-score every affected attribute of the images stored since this job's first
        chunk started (they may have missed their chunk); delete removed attributes' rows."""
        base, derived = self._split(vocab, diff.rescore, texts)
        started_ms = self.checkpoints(vocab).first_started_ms()
        since = {"since_ms": (started_ms or int(time.time() * 1000)) - self.clock_slack_ms}
        late_images = self.store.scalar("SELECT count() FROM columnist.image_embedding FINAL WHERE model = {model:String} "
                                        f"AND {LATE_WHERE}", {"model": self.model, **since})
        late = self._write(vocab, base, derived, texts, LATE_WHERE, since) if late_images else 0
        for code in diff.removed:
            self.store.command("DELETE FROM columnist.feature_image_attribute WHERE vocab_name = {v:String} "
                               "AND attribute = {c:String}", parameters={"v": vocab.name, "c": code})
        return late

    def rescore_images(self, vocab: Vocabulary, texts: dict[str, "np.ndarray"], image_ids: list[str]) -> int:
        """Every attribute of ``vocab`` for these images, from their stored embeddings (store
        check --repair); the score rows written."""
        written = self._write(vocab, *self._split(vocab, vocab.codes, texts), texts, "image_id IN {ids:Array(String)}",
                              {"ids": list(image_ids)})
        return written + self.derive_videos(vocab, vocab.codes)

    def restore(self, kept: Vocabulary, texts: dict[str, "np.ndarray"], failed: Vocabulary, codes: Sequence[str],
                replayed: Sequence[str], dropped: Sequence[str], removed: Sequence[str],
                images_a_statement: int = 20_000) -> int:
        """Undo what a change to ``failed`` wrote before it was given up, from the stored
        embeddings: ``failed``'s checkpoints are forgotten first (applying it again replays
        every image, even if this stops half way); the rows of the attributes only it has
        (``dropped``) written at its version are deleted; the images ingested while it was in
        use (those holding a row of its version for an attribute it did not replay,
        ``replayed``) get every attribute of ``kept`` scored again, and the other images
        holding a row of its version, or missing a row of an attribute it removed (its final
        pass deletes them: ``removed``), the attributes that differ (``codes``), a few thousand
        images a statement (ingest on the embedded engine waits while one runs), as `store
        check --repair` does. The images restored."""
        self.forget_checkpoints(failed)
        params = {"vocab": kept.name, "model": self.model, "failed": failed.version, "replayed": list(replayed),
                  "removed": list(removed)}
        if dropped:
            self.store.command("DELETE " + FAILED_ROWS + " AND attribute IN {dropped:Array(String)}",
                               parameters={**params, "dropped": list(dropped)})
        _, rows = self.store.query("SELECT image_id, max(attribute NOT IN {replayed:Array(String)}) " + FAILED_ROWS
                                   + " GROUP BY image_id ORDER BY image_id", params)
        ingested = [image_id for image_id, by_ingest in rows if by_ingest]
        reached = {image_id for image_id, by_ingest in rows if not by_ingest}
        if removed:
            reached |= {row[0] for row in self.store.query(MISSING_REMOVED, params)[1]} - set(ingested)
        for ids, each in ((ingested, kept.codes), (sorted(reached), codes)):
            base, derived = self._split(kept, each, texts)
            for start in range(0, len(ids), images_a_statement):
                self._write(kept, base, derived, texts, "image_id IN {ids:Array(String)}",
                            {"ids": ids[start:start + images_a_statement]}, count=False)
        if ingested or reached:
            self.derive_videos(kept, kept.codes)
        return len(ingested) + len(reached)

    @staticmethod
    def _split(vocab: Vocabulary, codes: Sequence[str], texts) -> tuple[list[str], list[DerivedAttribute]]:
        """``codes``' base attributes (those with texts) and derived ones, in evaluation order."""
        base = [c for c in codes if c in texts]
        derived = [d for d in vocab.derived_in_order() if d.code in codes]
        return base, derived

    def _write(self, vocab: Vocabulary, base: list[str], derived: list[DerivedAttribute], texts, where: str, where_params: dict,
               count: bool = True, final: bool = True) -> int:
        common = {"model": self.model, "vocab": vocab.name, "version": vocab.version, **where_params}
        written = 0
        if base:
            calibrations = [vocab.calibration_for(vocab.entry(code), self.model_calibration) for code in base]
            dots = ", ".join(f"toFloat32({{logit_scale:Float32}} * dotProduct(embedding, {{t{i}:Array(Float32)}}))"
                             for i in range(len(base)))
            texts_by_index = {f"t{i}": texts[code].tolist() for i, code in enumerate(base)}
            sql = BASE_SQL.replace("{where}", where).replace("{dots}", dots).replace("{final}", "FINAL" if final else "")
            written += self._insert(sql,
                                    {**common, **texts_by_index, "codes": base,
                                     "centres": [c.centre for c in calibrations],
                                     "scales": [c.scale for c in calibrations],
                                     "logit_scale": self.logit_scale, "source": self.source}, count)
        for rules, refs in _statements(_levels(derived)):
            written += self._insert(_derived_sql(rules, refs, where), {**common, "refs": refs}, count)
        return written

    def _insert(self, select: str, parameters: dict, count: bool) -> int:
        """INSERT the rows of ``select``; with ``count``, count them first and return how
        many (the embedded engine reports no written_rows)."""
        rows = int(self.store.scalar(f"SELECT count() FROM ({select})", parameters)) if count else None
        if rows != 0:
            # each (attribute, image_id) occurs once per statement: skip the insert-time dedup
            self.store.command(INSERT_SCORES + select, parameters=parameters, settings={"optimize_on_insert": 0})
        return rows or 0


def _references(derived: DerivedAttribute) -> set[str]:
    """The codes ``derived``'s rule reads (all codes are validated identifiers; checked again
    here, as they and ``derived.code`` enter SQL as names and literals)."""
    refs = references(parse_rule(derived.rule))
    for code in (derived.code, *refs):
        if not IDENTIFIER.match(code):
            raise ValueError(f"attribute code {code!r} is not an identifier")
    return refs


def _levels(derived: list[DerivedAttribute]) -> list[list[DerivedAttribute]]:
    """``derived`` (in vocab.derived_in_order) in levels: each reads only base scores, stored
    ones and those of earlier levels, so one statement writes a level (or a part of it:
    _statements)."""
    level_of: dict[str, int] = {}
    levels: list[list[DerivedAttribute]] = []
    for rule in derived:
        level = level_of[rule.code] = 1 + max((level_of[r] for r in _references(rule) if r in level_of), default=-1)
        if level == len(levels):
            levels.append([])
        levels[level].append(rule)
    return levels


MAX_RULES_SQL = 100_000
"""Characters of rules in one statement: ClickHouse refuses a query over 256 KiB
(max_query_size), and one level may hold 500 rules of 1,000 characters."""


def _statements(levels: list[list[DerivedAttribute]]) -> Iterator[tuple[list[str], list[str]]]:
    """Each level's rules rendered (_rule_sql) and cut into statements of at most MAX_RULES_SQL
    characters of rules, with the codes each statement reads."""
    for level in levels:
        rules: list[str] = []
        refs: set[str] = set()
        size = 0
        for derived in level:
            reads = _references(derived)
            rule = _rule_sql(derived, reads)
            cost = len(rule) + 80 * len(reads)  # its tuple, its columns
            if rules and size + cost > MAX_RULES_SQL:
                yield rules, sorted(refs)
                rules, refs, size = [], set(), 0
            rules.append(rule)
            refs |= reads
            size += cost
        if rules:
            yield rules, sorted(refs)


def _rule_sql(derived: DerivedAttribute, reads: set[str]) -> str:
    """(code, value, every reference present) of one rule, from the references' columns
    (``reads``: its references, checked by _references)."""
    value = to_sql(parse_rule(derived.rule), lambda c: f"ifNull(`{c}`, 0)")
    present = " AND ".join(f"`{r}` IS NOT NULL" for r in sorted(reads))
    return f"('{derived.code}', toFloat32({value}), {present})"


def _derived_sql(rules: list[str], refs: list[str], where: str) -> str:
    columns = ", ".join(f"argMaxIfOrNull(score, updated_at, attribute = '{r}') AS `{r}`" for r in refs)
    return DERIVED_SQL.replace("{rules}", ", ".join(rules)).replace("{columns}", columns).replace("{where}", where)
