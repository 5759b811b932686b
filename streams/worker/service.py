"""The worker's state and the two things it does: ingest a batch, apply a vocabulary.

Kept apart from the Faust wiring (columnist.worker.app) so it reads as plain asyncio. Blocking work
(decoding, encoding, ClickHouse) runs on one worker thread, in submission order. Scoring a
batch and writing it, and applying a vocabulary, each hold the vocabulary lock: a batch
scored with the old vocabulary is written before the switch, so the replay's final pass
and the removal of dropped attributes see it, and no batch mixes two versions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Awaitable, Callable

from columnist import faults
from columnist.worker.events import dead_letter, parse_vocab_event
from columnist.worker.fetch import FetchPolicy
from columnist.worker.ingest import Counters, Prepared, RawEvent, Rejected, prepare_events
from columnist.pipeline import Texts, embed_and_score, encoded_count
from columnist.settings import Settings
from columnist.vocab.prompts import render_prompts, text_embeddings
from columnist.vocab.schema import Vocabulary, vocabulary_from_dict

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.store import Store

log = logging.getLogger("columnist.worker")
SendDeadLetter = Callable[[bytes], Awaitable[None]]


class VocabularyRejected(ValueError):
    pass


class Service:
    """The worker's logic, given everything it works with (built by worker.app.build_service;
    tests build it with the mock encoder and the embedded engine, without Kafka)."""

    def __init__(self, store: "Store", encoder: "Encoder", configured: Vocabulary, policy: FetchPolicy,
                 send_dead_letter: SendDeadLetter, settings: Settings):
        self.store, self.encoder, self.configured, self.policy = store, encoder, configured, policy
        self.send_dead_letter = send_dead_letter
        self.settings = settings  # topic names, image and replay limits
        self.counters = Counters()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-work")
        self.prepare_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-prepare")
        """Fetching and decoding the next batch runs here while this one is encoded and written."""
        self.started = asyncio.Event()
        self.vocab_lock = asyncio.Lock()
        self.replay_start = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
        """Where this worker starts in a replay's ring of chunks: workers sharing a store start apart."""
        self.vocabs: dict[str, Vocabulary] = {}
        """Every vocabulary this worker scores with, by name: all applied ones."""
        self.texts: dict[str, Texts] = {}

    @property
    def vocab(self) -> Vocabulary | None:
        """The configured (default) vocabulary as applied."""
        return self.vocabs.get(self.configured.name)

    async def run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    # -- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        """Refuse a store of another model; take up every applied vocabulary, and apply the
        configured one if no vocabulary of its name was applied yet."""
        from columnist.store import check_model

        await self.run(check_model, self.store, self.encoder.name)
        accepted = self.settings.accepted_vocabularies
        for applied in await self.run(self.store.applied_vocabularies):
            if accepted and applied.name not in accepted and applied.name != self.configured.name:
                continue  # another worker's: this one would never hear of its changes
            self.vocabs[applied.name] = applied
            self.texts[applied.name] = await self.run(self._encode_prompts, applied, None)
        configured = self.configured
        if configured.name not in self.vocabs:
            log.info("no vocabulary %r applied yet: applying %s v%d", configured.name, configured.name,
                     configured.version)
            await self.apply_vocabulary(configured)
        log.info("worker ready: model %s on %s, vocabularies %s (default %s), images from %s", self.encoder.name,
                 getattr(self.encoder, "runtime", "numpy"),
                 ", ".join(f"{v.name} v{v.version} ({len(v.codes)} attributes)" for v in self.vocabs.values()),
                 configured.name, ", ".join(map(str, self.policy.roots)) or "no file roots")
        self.started.set()

    def _encode_prompts(self, vocab: Vocabulary, codes) -> dict[str, "np.ndarray"]:
        texts = text_embeddings(self.encoder, vocab, codes)
        self._count_prompts(vocab, texts)
        return texts

    def _count_prompts(self, vocab: Vocabulary, codes) -> None:
        self.counters.prompts_encoded += sum(len(render_prompts(vocab, vocab.entry(c))) for c in codes)

    # -- ingest --------------------------------------------------------------------------

    async def ingest(self, events: list[RawEvent]) -> None:
        """Score and store a batch; dead-letter what cannot be used. Returns only when every
        event is stored or dead-lettered (offsets are committed after that, not before).

        Each event is prepared on its own (any exception: its dead letter). What fails for
        the batch as a whole (encoding, the store, a bug) is retried with backoff until it
        succeeds: the stream pauses, nothing is lost, and no later batch is acknowledged
        past a hole (Faust would commit past one at the head of a new consumer group).
        The worker's agent calls the two halves itself, so the next batch is fetched and
        decoded while this one is encoded (both cores busy)."""
        await self.store_prepared(events, await self.prepare(events))

    async def prepare(self, events: list[RawEvent]) -> Prepared:
        """Fetch, decode and preprocess a batch (retried as a whole when the store cannot
        say which contents it already has, or the worker is out of file descriptors)."""
        async def attempt() -> Prepared:
            faults.point("ingest_batch")
            return await asyncio.get_running_loop().run_in_executor(
                self.prepare_executor, prepare_events, events, self.encoder, self.policy, self.counters,
                self.settings.max_image_pixels, self.store, self.settings.decode_threads)

        return await self._until_done(attempt, self._describe_batch(events), on_retry=self._count_batch_retry)

    async def store_prepared(self, events: list[RawEvent], prepared: Prepared) -> None:
        """Encode, score and write a prepared batch (retried until stored), then send its
        dead letters."""
        await self._until_done(lambda: self._encode_and_write(prepared), self._describe_batch(events),
                               on_retry=self._count_batch_retry)
        for rejected in prepared.rejected:
            await self._dead_letter(rejected)
        self.counters.batches += 1

    @staticmethod
    def _describe_batch(events: list[RawEvent]) -> str:
        first = events[0] if events else RawEvent(None)
        return f"batch of {len(events)} events (partition {first.partition}, offset {first.offset})"

    def _count_batch_retry(self) -> None:
        self.counters.batch_retries += 1

    async def _encode_and_write(self, prepared: Prepared) -> None:
        """Encoding, scoring and writing run under the vocabulary lock, so a batch is scored
        and written under one vocabulary version whatever is pushed meanwhile."""
        if not prepared.images:
            return
        first = prepared.images[0].record.image_id
        async with self.vocab_lock:
            started = time.perf_counter()
            vocabularies = [(vocab, self.texts[name]) for name, vocab in self.vocabs.items()]
            batch = await self._until_done(
                lambda: self.run(embed_and_score, prepared.images, vocabularies, self.encoder),
                f"encoding {len(prepared.images)} images (first {first!r})")
            self.counters.images_encoded += encoded_count(prepared.images)
            written = time.perf_counter()
            self.counters.encode_s += written - started
            self.counters.score_rows += await self._until_done(
                lambda: self.run(self.store.write, batch),
                f"ClickHouse write of {len(batch.images)} images (first {first!r})", on_retry=self._count_store_retry)
            self.counters.write_s += time.perf_counter() - written

    def _count_store_retry(self) -> None:
        self.counters.store_retries += 1

    async def _until_done(self, job: Callable[[], Awaitable], what: str, on_retry: Callable[[], None] | None = None,
                          retry_if: Callable[[BaseException], bool] = lambda err: isinstance(err, Exception)):
        """Await ``job()`` until it succeeds, with backoff (at most 30 s between attempts).
        Cancellation (the worker stopping) is never retried: it is a BaseException."""
        from tenacity import AsyncRetrying, retry_if_exception, wait_exponential

        def report(state) -> None:
            if on_retry:
                on_retry()
            log.warning("%s failed (attempt %d): %s: %s; retrying in %.1f s", what, state.attempt_number,
                        type(state.outcome.exception()).__name__, state.outcome.exception(), state.next_action.sleep)

        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.2, max=30), reraise=True,
                                           retry=retry_if_exception(retry_if), before_sleep=report):
            with attempt:
                return await job()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _dead_letter(self, rejected: Rejected) -> None:
        event = rejected.event
        log.warning("dead letter: %s event at partition %s offset %s (image %r): %s: %s",
                    self.settings.topic_images, event.partition, event.offset,
                    rejected.image_id[:200] if rejected.image_id else None,
                    type(rejected.error).__name__, str(rejected.error)[:500])
        await self._send_dead_letter(dead_letter(event.value, self.settings.topic_images, rejected.error,
                                                 event.partition, event.offset, rejected.image_id))

    async def _send_dead_letter(self, letter: bytes) -> None:
        await self._until_done(lambda: self.send_dead_letter(letter), "sending a dead letter")
        self.counters.dead_letters += 1

    # -- vocabularies --------------------------------------------------------------------

    async def vocabulary_event(self, event: RawEvent) -> None:
        """Apply a pushed vocabulary document (any name: each has its own version line), or
        dead-letter it and keep the last good one. Whatever the document holds, the worker goes on."""
        try:
            vocab = self._parse_vocabulary(event.value)
            current = self.vocabs.get(vocab.name)
            if current and (vocab.content_hash() == current.content_hash() or await self._applied_before(vocab)):
                log.info("vocabulary %s v%d was already applied; nothing to do", vocab.name, vocab.version)
                return
            await self.apply_vocabulary(vocab)
        except Exception as err:
            log.warning("vocabulary event at %s partition %s offset %s rejected: %s: %s", self.settings.topic_vocab,
                        event.partition, event.offset, type(err).__name__, str(err)[:1000])
            await self._send_dead_letter(dead_letter(event.value, self.settings.topic_vocab, err,
                                                     event.partition, event.offset))

    async def _applied_before(self, vocab: Vocabulary) -> bool:
        """True for a document applied in the past (a redelivered, older event)."""
        return vocab.version < self.vocabs[vocab.name].version and await self.run(
            self.store.was_applied, vocab.name, vocab.content_hash())

    def _parse_vocabulary(self, raw: bytes | None) -> Vocabulary:
        event = parse_vocab_event(raw)
        vocab = vocabulary_from_dict(event.document, f"vocabulary event {event.name[:100]!r} v{event.version}")
        accepted = self.settings.accepted_vocabularies
        if accepted and vocab.name not in accepted:
            raise VocabularyRejected(f"this worker accepts the vocabularies {', '.join(sorted(accepted))}, "
                                     f"not {vocab.name!r} (COLUMNIST_ACCEPT_VOCABULARIES)")
        if event.content_hash != vocab.content_hash():
            raise VocabularyRejected(f"content_hash {event.content_hash[:12]}... does not match the document "
                                     f"({vocab.content_hash()[:12]}...)")
        return vocab

    async def apply_vocabulary(self, vocab: Vocabulary) -> None:
        """Encode only new or changed prompts, switch ingest to the new vocabulary, replay
        stored embeddings in checkpointed chunks, then record the vocabulary as applied.

        It holds the vocabulary lock: a batch being scored finishes its write first, batches
        after it use the new vocabulary, so no batch mixes the two and the final pass and
        the removal of dropped attributes see every row written under the old one. While
        ClickHouse is unavailable it retries (the job resumes from its checkpoints); on any
        other failure the worker goes back to the vocabulary it had."""
        from columnist.store import StoreUnavailable
        from columnist.vocabulary_change import apply_vocabulary

        name = vocab.name

        def switch(texts: Texts) -> None:
            self.vocabs[name], self.texts[name] = vocab, texts

        async with self.vocab_lock:
            old, old_texts = self.vocabs.get(name), self.texts.get(name)
            try:
                report = await self._until_done(lambda: self.run(lambda: apply_vocabulary(
                    self.store, self.encoder, old, vocab, self.settings.replay_chunks, old_texts, on_switch=switch,
                    default_view=name == self.configured.name, start_at=self.replay_start)),
                    f"applying vocabulary {name} v{vocab.version}", retry_if=lambda err: isinstance(err, StoreUnavailable))
            except BaseException:
                await self._fall_back(name, vocab, old, old_texts)
                raise
        diff, replay = report.diff, report.replay
        self._count_prompts(vocab, [c for c in diff.rescore if c in self.texts[name]])
        self.counters.replays += 1
        self.counters.replay_chunks_written += replay.chunks - replay.chunks_skipped
        self.counters.replayed_score_rows += replay.score_rows + replay.late_score_rows
        log.info("vocabulary %s v%d applied: added %s, changed %s, removed %s, dependents %s; %d scores of "
                 "those attributes written, computed from stored embeddings (%d of %d chunks were already done)",
                 vocab.name, vocab.version, list(diff.added), list(diff.changed), list(diff.removed),
                 list(diff.dependents), report.stored_scores, replay.chunks_skipped, replay.chunks)

    async def _fall_back(self, name: str, failed: Vocabulary, old: Vocabulary | None, old_texts: Texts | None) -> None:
        """After a failed change: stay on the new vocabulary if the store recorded it (so no
        batch writes old scores over it), else go back to the old one."""
        try:
            recorded = await self.run(self.store.applied_vocabulary, name)
        except Exception:
            recorded = None
        if recorded is not None and recorded.content_hash() == failed.content_hash():
            return
        if old is None:
            self.vocabs.pop(name, None), self.texts.pop(name, None)
        else:
            self.vocabs[name], self.texts[name] = old, old_texts

    # -- reads for the CLI ---------------------------------------------------------------

    async def status(self) -> dict:
        return {
            "ready": self.started.is_set(),
            "model": self.encoder.name if self.encoder else None,
            "vocabulary": _describe(self.vocab) if self.vocab else None,
            "vocabularies": [_describe(v) for v in self.vocabs.values()],
            "counters": asdict(self.counters),
        }


def _describe(vocab: Vocabulary) -> dict:
    return {"name": vocab.name, "version": vocab.version, "content_hash": vocab.content_hash(),
            "attributes": len(vocab.codes)}
