"""The worker's state and the two things it does: ingest a batch, apply a vocabulary.

Kept apart from the Faust wiring (streams.app) so it reads as plain asyncio. Blocking work
(decoding, encoding, ClickHouse) runs on one worker thread, in submission order: a replay
chunk and an ingest batch never run at the same time, and an ingest batch that started
with the old vocabulary is written before the replay's final pass looks for images that
lack the new attributes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Awaitable, Callable

from streams.events import EventError, dead_letter, parse_vocab_event
from streams.fetch import FetchPolicy
from streams.ingest import Counters, RawEvent, Rejected, process_events
from streams.settings import Settings
from vocab.prompts import text_embeddings
from vocab.schema import Vocabulary, VocabularyError, vocabulary_from_dict

if TYPE_CHECKING:
    import numpy as np

    from models.encoder import Encoder
    from streams.store import ScoredBatch, Store

log = logging.getLogger("columnist.worker")
SendDeadLetter = Callable[[bytes], Awaitable[None]]


class VocabularyRejected(ValueError):
    pass


class Service:
    def __init__(self, settings: Settings, send_dead_letter: SendDeadLetter):
        self.settings = settings
        self.send_dead_letter = send_dead_letter
        self.counters = Counters()
        self.policy = FetchPolicy(settings.roots, settings.allowed_hosts, settings.max_image_bytes)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-work")
        self.started = asyncio.Event()
        self.store: Store | None = None
        self.encoder: Encoder | None = None
        self.vocab: Vocabulary | None = None
        self.texts: dict[str, np.ndarray] = {}

    async def run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    # -- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store (retrying while ClickHouse is unavailable), load the model, and take
        up the last applied vocabulary, or apply the configured one if none was applied yet.
        A configuration that cannot work (bad vocabulary file, unknown model) stops the worker."""
        try:
            await self._start()
        except Exception as err:
            log.critical("worker cannot start: %s: %s", type(err).__name__, err)
            os.kill(os.getpid(), signal.SIGTERM)
            raise

    async def _start(self) -> None:
        from tenacity import AsyncRetrying, retry_if_not_exception_type, wait_exponential

        from models.registry import load_encoder
        from streams.cli_support import load_vocabulary_arg
        from streams.store import Store

        settings = self.settings
        configured = load_vocabulary_arg(settings.vocab)
        self.encoder = await self.run(lambda: load_encoder(settings.model, settings.threads, settings.batch_size))
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=30), reraise=True,
                                           retry=retry_if_not_exception_type((ValueError, TypeError)),
                                           before_sleep=lambda state: log.warning(
                                               "ClickHouse at %s unavailable (attempt %d): %s", settings.db,
                                               state.attempt_number, state.outcome.exception())):
            with attempt:
                self.store = await self.run(lambda: Store.connect(settings.db, settings.cluster))
        applied = await self.run(self.store.applied_vocabulary, configured.name)
        if applied is None:
            log.info("no vocabulary %r applied yet: applying %s", configured.name, settings.vocab)
            await self.apply_vocabulary(configured)
        else:
            self.vocab = applied
            self.texts = await self.run(self._encode_prompts, applied, None)
        log.info("worker ready: model %s, vocabulary %s v%d (%d attributes), images from %s",
                 self.encoder.name, self.vocab.name, self.vocab.version, len(self.vocab.codes),
                 ", ".join(map(str, self.policy.roots)) or "no file roots")
        self.started.set()

    def _encode_prompts(self, vocab: Vocabulary, codes) -> dict[str, "np.ndarray"]:
        texts = text_embeddings(self.encoder, vocab, codes)
        self._count_prompts(vocab, texts)
        return texts

    def _count_prompts(self, vocab: Vocabulary, codes) -> None:
        self.counters.prompts_encoded += sum(len(vocab.templates_for(vocab.entry(c))) for c in codes)

    # -- ingest --------------------------------------------------------------------------

    async def ingest(self, events: list[RawEvent]) -> None:
        """Score and store a batch; dead-letter what cannot be used. Returns only when the
        batch is stored, so offsets are committed only after the write succeeded."""
        vocab, texts = self.vocab, self.texts
        result = await self.run(process_events, events, vocab, texts, self.encoder, self.policy, self.counters)
        if result.batch is not None:
            started = time.perf_counter()
            self.counters.score_rows += await self._write_with_retry(result.batch)
            self.counters.write_s += time.perf_counter() - started
        for rejected in result.rejected:
            await self._dead_letter(rejected)
        self.counters.batches += 1

    async def _write_with_retry(self, batch: "ScoredBatch") -> int:
        """Retry with backoff until the store takes the batch: the stream pauses, nothing is lost."""
        from tenacity import AsyncRetrying, retry_if_not_exception_type, wait_exponential

        def report(state) -> None:
            self.counters.store_retries += 1
            log.warning("ClickHouse write of %d images (first %r) failed (attempt %d): %s; retrying in %.1f s",
                        len(batch.images), batch.images[0].image_id, state.attempt_number,
                        state.outcome.exception(), state.next_action.sleep)

        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.2, max=30),
                                           retry=retry_if_not_exception_type((TypeError, AttributeError)),
                                           before_sleep=report, reraise=True):
            with attempt:
                return await self.run(self.store.write, batch)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _dead_letter(self, rejected: Rejected) -> None:
        event = rejected.event
        log.warning("dead letter: %s event at partition %s offset %s (image %r): %s: %s",
                    self.settings.topic_images, event.partition, event.offset, rejected.image_id,
                    type(rejected.error).__name__, rejected.error)
        await self.send_dead_letter(dead_letter(event.value, self.settings.topic_images, rejected.error,
                                                event.partition, event.offset, rejected.image_id))
        self.counters.dead_letters += 1

    # -- vocabularies --------------------------------------------------------------------

    async def vocabulary_event(self, event: RawEvent) -> None:
        """Apply a pushed vocabulary document, or dead-letter it and keep the last good one."""
        try:
            vocab = self._parse_vocabulary(event.value)
            if vocab.content_hash() == self.vocab.content_hash() or await self._applied_before(vocab):
                log.info("vocabulary %s v%d was already applied; nothing to do", vocab.name, vocab.version)
                return
            if vocab.version <= self.vocab.version:
                raise VocabularyRejected(
                    f"version {vocab.version} is not newer than the applied version {self.vocab.version}")
        except (EventError, VocabularyError, VocabularyRejected) as err:
            log.warning("vocabulary event at %s offset %s rejected: %s", self.settings.topic_vocab, event.offset, err)
            await self.send_dead_letter(dead_letter(event.value, self.settings.topic_vocab, err,
                                                    event.partition, event.offset))
            self.counters.dead_letters += 1
            return
        await self.apply_vocabulary(vocab)

    async def _applied_before(self, vocab: Vocabulary) -> bool:
        """True for a document applied in the past (a redelivered, older event)."""
        count = await self.run(self.store.scalar,
                               "SELECT count() FROM columnist.vocabulary WHERE vocab_name = {n:String} "
                               "AND content_hash = {h:String}", {"n": vocab.name, "h": vocab.content_hash()})
        return count > 0 and vocab.version < self.vocab.version

    def _parse_vocabulary(self, raw: bytes) -> Vocabulary:
        event = parse_vocab_event(raw)
        vocab = vocabulary_from_dict(event.document, f"vocabulary event {event.name!r} v{event.version}")
        served = self.vocab.name if self.vocab else None
        if served and vocab.name != served:
            raise VocabularyRejected(f"this worker serves vocabulary {served!r}, not {vocab.name!r}")
        if event.content_hash != vocab.content_hash():
            raise VocabularyRejected(f"content_hash {event.content_hash[:12]}... does not match the document "
                                     f"({vocab.content_hash()[:12]}...)")
        return vocab

    async def apply_vocabulary(self, vocab: Vocabulary) -> None:
        """Encode only new or changed prompts, switch ingest to the new vocabulary, replay
        stored embeddings in checkpointed chunks, then record the vocabulary as applied.

        It runs on the work thread as one job: ingest batches queued meanwhile wait for it
        and then use the new vocabulary, so none is scored with a mix of the two."""
        from streams.replay import apply_vocabulary

        def switch(texts: dict[str, "np.ndarray"]) -> None:
            self.vocab, self.texts = vocab, texts

        old = self.vocab
        report = await self.run(lambda: apply_vocabulary(
            self.store, self.encoder, old, vocab, self.settings.replay_chunks, self.texts, on_switch=switch))
        diff, replay = report.diff, report.replay
        self._count_prompts(vocab, [c for c in diff.rescore if c in self.texts])
        self.counters.replays += 1
        self.counters.replayed_score_rows += replay.score_rows + replay.late_score_rows
        log.info("vocabulary %s v%d applied: added %s, changed %s, removed %s, dependents %s; %d scores of "
                 "those attributes stored, computed from stored embeddings (%d of %d chunks were already done)",
                 vocab.name, vocab.version, list(diff.added), list(diff.changed), list(diff.removed),
                 list(diff.dependents), report.stored_scores, replay.chunks_skipped, replay.chunks)

    # -- reads for the CLI ---------------------------------------------------------------

    async def status(self) -> dict:
        return {
            "ready": self.started.is_set(),
            "model": self.encoder.name if self.encoder else None,
            "vocabulary": {"name": self.vocab.name, "version": self.vocab.version,
                           "content_hash": self.vocab.content_hash(), "attributes": len(self.vocab.codes)}
            if self.vocab else None,
            "counters": asdict(self.counters),
        }

    async def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        """A read-only query, for `columnist query` while this worker owns an embedded database."""
        def run():
            result = self.store.client.query(sql, settings={"readonly": 1})
            return list(result.column_names), [tuple(r) for r in result.result_rows]

        return await self.run(run)
