"""The worker: its state, and the one loop that ingests batches and applies vocabularies.

``start`` (blocking, before any source is read) checks the store's model and takes up the
applied vocabularies. ``run(source)`` is the loop production and the in-process tests share:
batch N+2 is fetched and decoded while batch N+1 is encoded and batch N written (both cores
busy, the model never waiting for the store), batches are written and acked in order (a busy
worker writes several in one set of statements: store_scored), a batch is acked only once
every event of it is stored or dead-lettered, a batch that fails as a whole is retried with
backoff until it is stored (never acked meanwhile, never skipped), and vocabulary documents
are applied beside ingest as they arrive.

Blocking work runs on threads: decoding the next batch on one, encoding on another, writing
on a third, encoding a new vocabulary's prompts on a fourth. Scoring a batch holds the
vocabulary lock, so no batch mixes two versions; whatever changes the vocabulary or the
model takes the lock once every batch scored before is written (``batches_settled``): a
batch scored with the old vocabulary is stored before the switch, so the replay's final pass
and the removal of dropped attributes see it. A new vocabulary's prompts are encoded before
the lock is taken, so ingest goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Awaitable, Callable

from columnist import decode_watch, faults, sidecars, tower_watch
from columnist.errors import ConfigurationError
from columnist.kafka.events import MODEL_KEY, check_key, dead_letter, parse_vocab_event
from columnist.models.registry import load_encoder
from columnist.pipeline import SecondModel, Texts, embed_and_score_isolating, encoded_count
from columnist.printable import printable
from columnist.prompt_cache import PromptCache
from columnist.records import Counters, RawEvent, ScoredBatch
from columnist.retry import until_done
from columnist.settings import Settings
from columnist.store import StoreUnavailable
from columnist.store.check import GRACE_S, delete_orphans
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import Vocabulary, vocabulary_from_dict
from columnist.vocabulary_change import apply_vocabulary, carry_out, give_up, plan_change, scored_vocabularies
from columnist.worker.fetch import FetchPolicy
from columnist.worker.ingest import Prepared, Rejected, prepare_events
from columnist.worker.metrics import Timings
from columnist.worker.migration import Migration

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.store import Store
    from columnist.worker.sources import Batch, Source

log = logging.getLogger("columnist.worker")

GROUP_WAIT_S = 1.0
"""The longest a scored batch waits for the batches after it to be written with them."""


class VocabularyRejected(ConfigurationError, ValueError):
    """A vocabulary document this worker does not apply (another name, a forged hash)."""


@dataclass
class Scored:
    """A batch once the model is done with it, waiting for the store (its pixels let go)."""

    deleted: list[str]
    rejected: list[Rejected]
    """Its dead letters, sent once it is written (a model that failed it adds every image)."""
    batch: ScoredBatch | None = None
    alongside: ScoredBatch | None = None
    """The rows of a migration's target model, written before the batch's own."""

    @property
    def image_ids(self) -> list[str]:
        """The images it stores (those the model failed are dead letters instead)."""
        return [record.image_id for record in self.batch.images] if self.batch is not None else []


@dataclass
class _Write:
    """One set of statements that writes one or more scored batches, in order (store_scored)."""

    events: list[RawEvent]
    """The first batch's events (to name the write)."""
    scored: list[Scored] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)
    open: bool = True
    """Whether a later batch may still join it (its first batch is waiting for more)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a batch joins it, or when one it may wait for will not come."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once it has ended, ``stored`` saying whether it went through."""
    stored: bool = False

    def takes(self, scored: Scored, most: int) -> bool:
        """Whether ``scored`` can join: it is open and not full, and ``scored`` deletes nothing
        (deletions go before a write's rows), stores no image id the write stores already (a
        batch's own events are one per id; across batches, one write would hold both versions:
        a video's frames and the still that replaced it), and was scored with the same model
        and vocabularies."""
        def joins(a: ScoredBatch | None, b: ScoredBatch | None) -> bool:
            return a is None or b is None or a.joins(b)
        ids = {image_id for s in self.scored for image_id in s.image_ids}
        return self.open and len(self.scored) < most and not scored.deleted \
            and ids.isdisjoint(scored.image_ids) and all(
                joins(s.batch, scored.batch) and joins(s.alongside, scored.alongside) for s in self.scored)


@dataclass
class _Storing:
    """A batch on its way to the store, as the loop and the batch after it see it."""

    task: asyncio.Task | None = None
    encoded: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the batch no longer needs the model (the next one may be encoded)."""
    write: _Write | None = None
    """The write that carries it, once it has reached the store."""


class Service:
    """The worker's logic, given everything it works with (built by worker.app.build_service;
    tests build it with the mock encoder and the embedded engine, without Kafka)."""

    def __init__(self, store: "Store", encoder: "Encoder", configured: Vocabulary, policy: FetchPolicy,
                 settings: Settings, load_model: "Callable[[str], Encoder] | None" = None):
        self.store, self.encoder, self.configured, self.policy = store, encoder, configured, policy
        self.settings = settings  # topic names, image and replay limits
        self.limits = settings.image_limits
        self.counters = Counters()
        self.timings = Timings()
        """Histograms of batch and stage seconds (the metrics page serves them)."""
        self.prompts = PromptCache(encoder, store, self.counters)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-work")
        self.write_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-write")
        """Batches are written here, in order, while the next one is encoded on the work thread."""
        self.prepare_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-prepare")
        """Fetching and decoding the next batch runs here while this one is encoded and written."""
        self.prompt_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-prompts")
        """A new vocabulary's prompts are encoded here, beside ingest."""
        self.replay_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-replay")
        """A vocabulary change's replay runs here, beside ingest."""
        self.sidecar_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-sidecars")
        """XMP sidecars are written here (COLUMNIST_SIDECARS), after the rows they describe."""
        self.ready = False
        self.replay_start = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
        """Where this worker starts in a replay's ring of chunks: workers sharing a store start apart."""
        self.vocabs: dict[str, Vocabulary] = {}
        """Every vocabulary this worker scores with, by name."""
        self.texts: dict[str, Texts] = {}
        self.second: SecondModel | None = None
        """The model a migration moves the store to: every batch is encoded with it too."""
        self.migration = Migration(self, load_model or (lambda ref: load_encoder(
            ref, settings.threads, settings.batch_size, settings.runtime)))
        self._lock: asyncio.Lock | None = None
        self._unwritten = 0
        """Batches scored and not yet written (or given up at shutdown)."""
        self._coming = 0
        """Full batches taken from the source that have not reached the store yet (a backlog:
        a worker that keeps up takes batches before they fill)."""
        self._gathering: _Write | None = None
        """The write waiting for those batches to join it."""
        self._settling = 0
        """Callers waiting in batches_settled (a write waits for no one meanwhile)."""
        self._all_written: asyncio.Event | None = None
        self._send: Callable[[bytes], Awaitable[None]] | None = None

    @property
    def vocab(self) -> Vocabulary | None:
        """The configured (default) vocabulary as applied."""
        return self.vocabs.get(self.configured.name)

    @property
    def vocab_lock(self) -> asyncio.Lock:
        """Made in the loop that first uses it (the worker starts before its event loop does)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def on(self, executor: ThreadPoolExecutor, function, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    async def run_blocking(self, function, *args):
        """On the work thread, in submission order (encoding, the store's small jobs)."""
        return await self.on(self.executor, function, *args)

    async def run_tower(self, events: list[RawEvent], function, *args):
        """run_blocking for work that calls the image tower for these events' batch, which a
        stuck call names (columnist.tower_watch)."""
        return await self.run_blocking(tower_watch.doing(self._describe_batch(events), function), *args)

    @property
    def all_written(self) -> asyncio.Event:
        """Set while no scored batch waits for its write (made in the loop, as the lock)."""
        if self._all_written is None:
            self._all_written = asyncio.Event()
            if self._unwritten == 0:
                self._all_written.set()
        return self._all_written

    @asynccontextmanager
    async def batches_settled(self):
        """The vocabulary lock, taken once every batch scored before is written: what switches
        the vocabulary or the model, or writes beside ingest, sees every row scored before,
        and never runs beside a write (not even one a stopping worker gave up waiting for)."""
        self._settling += 1
        self._nudge()  # a write gathering batches goes now: the next batch waits for this lock
        try:
            async with self.vocab_lock:
                await self.all_written.wait()
                await self.on(self.write_executor, lambda: None)  # the write thread is idle
                yield
        finally:
            self._settling -= 1

    def _nudge(self) -> None:
        """Tell the write gathering batches that what it waits for changed."""
        if self._gathering is not None:
            self._gathering.changed.set()

    def _count_unwritten(self, change: int) -> None:
        self._unwritten += change
        if self._unwritten:
            self.all_written.clear()
        else:
            self.all_written.set()

    def _warm_up(self) -> None:
        """The model's first run, before the first batch: the likeliest call to hang, so bounded too."""
        def warm_up() -> None:
            with tower_watch.bounded(self.encoder.name, 1):
                self.encoder.warm_up()
        try:
            tower_watch.doing("the model's warm-up at start", warm_up)()
        except Exception as err:  # noqa: BLE001 - the first batch meets the same failure, and says it where it counts
            log.warning("warming the model up failed: %s: %s", type(err).__name__, printable(err, 300))

    def use_encoder(self, encoder: "Encoder") -> None:
        """Encode with ``encoder`` from now on (the store's serving model)."""
        self.encoder = encoder
        self.prompts = PromptCache(encoder, self.store, self.counters)

    # -- start-up (blocking) -------------------------------------------------------------

    def start(self) -> None:
        """Refuse a store of another model (a model it moved away from: take the one it
        serves); take up every applied vocabulary (the accepted ones), a running migration's
        target, and apply the configured vocabulary if none of its name was applied yet."""
        tower_watch.configure(self.settings.encode_timeout, self.settings.batch_size)
        decode_watch.configure(self.settings.run_path)
        if refused := decode_watch.listed():
            log.warning("%d contents are refused without being decoded: decoding each of them got stuck before "
                        "(listed in %s)", len(refused), decode_watch.stuck_file())
        if self.settings.sidecars != "off":
            sidecars.check_available()  # XmpUnavailable (exit 3) before the worker takes any work
        state = self.migration.check_serving()
        self.encoder.open_image_tower()  # one its runtime cannot open ends the start (exit 3), not each batch
        self.executor.submit(self._warm_up)  # while Kafka's consumer group forms: the first batch queues behind it
        orphans = delete_orphans(self.store)
        if any(orphans):
            log.warning("deleted %d embeddings and %d scores left without their image by a write that was killed "
                        "(older than %d s; `columnist store check` lists what else a crash left)", *orphans, GRACE_S)
        accepted = self.settings.accepted_vocabularies
        for applied in scored_vocabularies(self.store, accepted, keep=self.configured.name):
            self.vocabs[applied.name] = applied
            self.texts[applied.name] = text_embeddings(self.prompts, applied)
        self.migration.take_up(state)
        configured = self.configured
        if configured.name not in self.vocabs:
            log.info("no vocabulary %r applied yet: applying %s v%d", configured.name, configured.name,
                     configured.version)
            target = self.second.encoder if self.second else None
            apply_vocabulary(self.store, self.encoder, None, configured, self.settings.replay_chunks, default_view=True,
                             start_at=self.replay_start, prompts=self.prompts, target=target)
            self.vocabs[configured.name] = configured
            self.texts[configured.name] = text_embeddings(self.prompts, configured)
            if target is not None:
                self.migration.texts[configured.name] = text_embeddings(PromptCache(target, self.store), configured)
                self.migration.refresh()
        log.info("worker ready: model %s on %s, vocabularies %s (default %s), images from %s", self.encoder.name,
                 self.encoder.runtime,
                 ", ".join(f"{v.name} v{v.version} ({len(v.codes)} attributes)" for v in self.vocabs.values()),
                 configured.name, ", ".join(map(str, self.policy.roots)) or "no file roots")
        self.ready = True

    # -- the loop ------------------------------------------------------------------------

    async def run(self, source: "Source") -> None:
        """Ingest the source's batches until it ends (or this task is cancelled), applying its
        vocabulary documents beside. A batch still being stored when the task is cancelled
        is not acked: the source delivers it again."""
        self._send = source.dead_letter
        following = asyncio.create_task(self._follow(source), name="columnist-vocabularies")
        self.migration.start()
        storing: list[_Storing] = []  # the batches before this one: one being encoded, the others being written
        self._coming = 0
        try:
            async for batch in source.batches():
                self._coming += self._full(batch.events)
                taken = time.perf_counter()
                prepared = await self.prepare(batch.events)  # decoding this batch while the previous one encodes
                self.timings.stage.labels("fetch_decode").observe(time.perf_counter() - taken)
                if storing:
                    await storing[-1].encoded.wait()  # the model is free for this batch
                if len(storing) > self.settings.write_group:
                    await storing.pop(0).task  # and at most a write's batches wait for the store
                this = _Storing()
                this.task = asyncio.create_task(self._store_and_ack(batch, prepared, taken, this,
                                                                    storing[-1] if storing else None))
                storing.append(this)
            for each in storing:
                await each.task
        finally:
            for each in storing:
                if not each.task.done():
                    each.task.cancel()
            following.cancel()
            await self.migration.stop()

    async def _store_and_ack(self, batch: "Batch", prepared: Prepared, taken: float, this: _Storing,
                             before: _Storing | None) -> None:
        """Encode the batch, write it behind the one ``before`` it, then, once that one is done,
        send its dead letters and ack it (both in order). ``this.encoded`` is set once the model
        is free: the next batch is encoded while this one is written."""
        try:
            while (scored := await until_done(partial(self._encode, prepared), self._describe_batch(batch.events),
                                              on_retry=self._count_batch_retry)) is None:
                log.info("the store now serves %s: a batch prepared for another model is prepared again",
                         self.encoder.name)
                prepared = await self.prepare(batch.events, before=prepared)
        except BaseException:
            self._coming -= self._full(batch.events)  # it will not reach the store
            self._nudge()
            raise
        finally:
            this.encoded.set()
        del prepared  # its pixels: three batches hold theirs at once (decoding, waiting, encoding)
        await self.store_scored(batch.events, scored, this, before)
        if before is not None:
            await asyncio.wait([before.task])
            before.task.result()  # a batch before that failed ends the loop: nothing after it is acked
        for each in scored.rejected:
            await self._dead_letter(each)
        self.counters.batches += 1
        batch.ack()
        self.timings.batch.observe(time.perf_counter() - taken)
        self.write_sidecars(scored.image_ids)

    def write_sidecars(self, image_ids: list[str] | None) -> None:
        """Bring the sidecars of these images (of every image: None, after a vocabulary change)
        to what the store says now (COLUMNIST_SIDECARS), on their own thread, under the roots."""
        mode = self.settings.sidecars
        if mode == "off" or not self.policy.roots or image_ids == []:
            return
        tiers = ["accepted"] + (["tentative"] if mode == "tentative" else [])

        def write() -> None:
            try:
                run = sidecars.write_all(self.store, self.policy.roots, list(self.vocabs), tiers,
                                         self.settings.sidecar_naming, image_ids=image_ids)
            except Exception as err:  # noqa: BLE001 - sidecars are a courtesy: the rows are stored
                log.warning("XMP sidecars not written: %s: %s", type(err).__name__, printable(err, 300))
                return
            for change in run.changes:
                if change.error:
                    log.warning("XMP sidecar %s: %s", printable(str(change.sidecar), 300), change.error)
                else:
                    self.counters.sidecars_written += 1
        self.sidecar_executor.submit(write)

    async def _follow(self, source: "Source") -> None:
        async for event in source.vocabularies():
            await self.vocabulary_event(event)

    # -- ingest --------------------------------------------------------------------------

    async def prepare(self, events: list[RawEvent], before: Prepared | None = None) -> Prepared:
        """Fetch, decode and preprocess a batch (retried as a whole when the store cannot
        say which contents it already has, or the worker is out of file descriptors).
        ``before``: the batch prepared for the model the store served then; its events were
        counted that time, so only the work done again and the events failing only now count."""
        async def attempt() -> Prepared:
            faults.point("ingest_batch")
            counted = Counters()  # an attempt given up counts nothing: its events are counted once
            prepared = await self.on(self.prepare_executor, prepare_events, events, self.encoder, self.policy,
                                     counted, self.limits, self.store, self.second)
            if counted.events_unkeyed and not self.counters.events_unkeyed:
                log.warning("%d image events without a Kafka key: with more than one partition, one image's events "
                            "may be applied out of order; key each by its image_id (as `columnist publish` does)",
                            counted.events_unkeyed)
            self.counters.add(counted if before is None else _counted_again(counted, before, prepared))
            return prepared

        return await until_done(attempt, self._describe_batch(events), on_retry=self._count_batch_retry)

    async def store_scored(self, events: list[RawEvent], scored: Scored, this: _Storing,
                           before: _Storing | None) -> None:
        """Write a scored batch after the batches before it (retried until done).

        While full batches are on their way after it (taken from the source, being decoded or
        encoded: a backlog), it waits for them, up to COLUMNIST_WRITE_GROUP batches and
        GROUP_WAIT_S seconds, and they are written together: a busy worker pays the store's
        cost per statement (about 15 ms of CPU on the embedded engine, a round trip to a
        server) and makes its parts once a group; a worker that keeps up writes each batch at
        once."""
        self._coming -= self._full(events)
        previous = before.write if before is not None else None
        if previous is not None and previous.takes(scored, self.settings.write_group):
            this.write = previous
            previous.scored.append(scored)
            previous.changed.set()
            try:
                await previous.ended.wait()
            finally:
                self._count_unwritten(-1)
            if not previous.stored:  # stopped before it was written: so is this one
                raise asyncio.CancelledError
            return
        if previous is not None and previous.open:
            previous.open = False  # this batch cannot join it: it waits for no more
            previous.changed.set()
        this.write = write = _Write(events, [scored])
        try:
            await self._gather(write)
            if previous is not None:
                await previous.ended.wait()
                if not previous.stored:
                    raise asyncio.CancelledError
            await until_done(partial(self._write, write.scored), self._describe_write(write),
                             on_retry=self._count_batch_retry)
            write.stored = True
        finally:
            write.open = False
            write.ended.set()
            self._count_unwritten(-1)

    def _full(self, events: list[RawEvent]) -> bool:
        return len(events) >= self.settings.batch_size

    async def _gather(self, write: _Write) -> None:
        """Keep ``write`` open while batches are on their way to join it."""
        self._gathering = write
        try:
            while write.open and self._coming > 0 and not self._settling \
                    and len(write.scored) < self.settings.write_group:
                left = write.opened + GROUP_WAIT_S - time.monotonic()
                if left <= 0:
                    break
                write.changed.clear()
                try:
                    await asyncio.wait_for(write.changed.wait(), left)
                except TimeoutError:
                    break
        finally:
            write.open = False
            if self._gathering is write:
                self._gathering = None

    def _describe_write(self, write: _Write) -> str:
        more = len(write.scored) - 1
        return self._describe_batch(write.events) + (f" and the {more} after it" if more else "")

    @staticmethod
    def _describe_batch(events: list[RawEvent]) -> str:
        first = events[0] if events else RawEvent(None)
        return f"batch of {len(events)} events (partition {first.partition}, offset {first.offset})"

    def _count_batch_retry(self) -> None:
        self.counters.batch_retries += 1

    async def _encode(self, prepared: Prepared) -> Scored | None:
        """Encode and score under the vocabulary lock, so a batch is scored under one
        vocabulary version whatever is pushed meanwhile; the batch then counts as unwritten
        until its write (a vocabulary switch waits for it). None: it was prepared for a model
        the store no longer serves (its embeddings reused and pixels are that model's).

        An image whose encoding fails on its own is dead-lettered with the reason, its batch-mates
        go on (pipeline.embed_and_score_isolating); a model that fails for every image, a blank
        one too, fails the batch as a whole, retried."""
        async with self.vocab_lock:
            if prepared.images and prepared.model != self.encoder.name:
                return None
            scored = Scored(prepared.deleted, list(prepared.rejected))
            if prepared.images:
                started = time.perf_counter()
                vocabularies = [(vocab, self.texts[name]) for name, vocab in self.vocabs.items()]
                scored.batch, failed = await self.run_tower(prepared.events, embed_and_score_isolating,
                                                            prepared.images, vocabularies, self.encoder)
                for position, err in failed:
                    image_id = prepared.images[position].record.image_id
                    log.error("image %s: %s", printable(image_id), printable(err, 500))
                    scored.rejected.append(Rejected(prepared.events[position], err, image_id))
                self.counters.add(Counters(images_failed=len(failed)))  # the prepare thread adds to it too
                second = self.second if self.second and prepared.second_model == self.second.encoder.name else None
                if scored.batch is not None and second is not None:
                    kept = set(scored.image_ids)
                    scored.alongside = await self.run_tower(prepared.events, second.score, [
                        image for image in prepared.second if image.record.image_id in kept])
                if scored.batch is not None:
                    self.counters.images_encoded += encoded_count(prepared.images)
                self.counters.encode_s += time.perf_counter() - started
                self.timings.stage.labels("encode").observe(time.perf_counter() - started)
            self._count_unwritten(+1)
            return scored

    async def _write(self, group: list[Scored]) -> None:
        """Deletions, then the batches' rows (a migration's target's first: an image row means
        every model's rows are there), on the write thread. Only a group's first batch may
        delete (_Write.takes), so every deletion comes before the rows of the batches after it."""
        deleted = [image_id for scored in group for image_id in scored.deleted]
        if deleted:
            await self.on(self.write_executor, self.store.delete_images, deleted)
        batches = [scored.batch for scored in group if scored.batch is not None]
        if not batches:
            self.counters.images_deleted += len(deleted)
            return
        alongside = [scored.alongside for scored in group if scored.alongside is not None]
        started = time.perf_counter()
        try:
            if alongside:
                await self.on(self.write_executor, self.store.write_model_rows, ScoredBatch.merged(alongside))
            rows = await self.on(self.write_executor, self.store.write, ScoredBatch.merged(batches))
        except StoreUnavailable:
            self.counters.store_retries += 1
            raise
        self.counters.images_deleted += len(deleted)  # once the whole write went through: a retry deletes again
        self.counters.images_stored += sum(len(scored.image_ids) for scored in group)
        self.counters.score_rows += rows
        self.counters.write_s += time.perf_counter() - started
        self.timings.stage.labels("write").observe(time.perf_counter() - started)

    async def _dead_letter(self, rejected: Rejected) -> None:
        event = rejected.event
        log.warning("dead letter: %s event at partition %s offset %s (image %s): %s: %s",
                    self.settings.topic_images, event.partition, event.offset,
                    printable(rejected.image_id) if rejected.image_id else None,
                    type(rejected.error).__name__, printable(rejected.error, 500))
        await self._send_dead_letter(dead_letter(event.value, self.settings.topic_images, rejected.error,
                                                 event.partition, event.offset, rejected.image_id, self.settings.group,
                                                 event.key))

    async def _send_dead_letter(self, letter: bytes) -> None:
        send = self._send
        if send is None:
            raise RuntimeError("no source to send dead letters to: call run(source)")  # pragma: no cover
        await until_done(lambda: send(letter), "sending a dead letter")
        self.counters.dead_letters += 1

    # -- vocabularies --------------------------------------------------------------------

    async def vocabulary_event(self, event: RawEvent) -> None:
        """Apply a pushed vocabulary document (any name: each has its own version line), or
        dead-letter it and keep the last good one. Whatever the document holds, the worker goes on.
        A model event (a migration's step, keyed MODEL_KEY) goes to the migration."""
        if event.key == MODEL_KEY:
            await self.migration.event(event)
            return
        try:
            vocab = self._parse_vocabulary(event.value)
            check_key(event.key, vocab.name, "vocabulary name", "`columnist vocab push`", empty_is_none=False)
            current = self.vocabs.get(vocab.name)
            if current and vocab.content_hash() == current.content_hash():
                log.info("vocabulary %s v%d is the one applied; nothing to do", vocab.name, vocab.version)
                return
            if current and await self._applied_before(vocab):
                log.info("vocabulary %s v%d is older than the applied v%d and was applied before; nothing to do",
                         vocab.name, vocab.version, current.version)
                return
            await self.apply_vocabulary(vocab)
        except Exception as err:
            await self.refuse_event(event, err)

    async def refuse_event(self, event: RawEvent, err: Exception) -> None:
        """Dead-letter a refused document, once: the same event read again after a restart is
        only logged."""
        key = hashlib.sha256(event.value or b"").hexdigest()
        name = _event_name(event.value)
        try:
            seen = await self.run_blocking(self.store.was_refused, name, key)
        except Exception:  # the store away: dead-letter it (twice rather than never)
            seen = False
        log.warning("vocabulary event at %s partition %s offset %s refused%s: %s: %s", self.settings.topic_vocab,
                    event.partition, event.offset, " (as before; not dead-lettered again)" if seen else "",
                    type(err).__name__, printable(err, 1000))
        if seen:
            return
        await self._send_dead_letter(dead_letter(event.value, self.settings.topic_vocab, err, event.partition,
                                                 event.offset, group=self.settings.group, key=event.key))
        try:
            await self.run_blocking(self.store.record_refusal, name, key, f"{type(err).__name__}: {err}")
        except Exception as failure:  # noqa: BLE001 - only the record of a refusal is lost
            log.warning("could not record the refusal of vocabulary event %s: %s", key[:12], failure)

    async def _applied_before(self, vocab: Vocabulary) -> bool:
        """True for a document applied in the past (a redelivered, older event)."""
        return vocab.version < self.vocabs[vocab.name].version and await self.run_blocking(
            self.store.was_applied, vocab.name, vocab.content_hash())

    def _parse_vocabulary(self, raw: bytes | None) -> Vocabulary:
        event = parse_vocab_event(raw)
        vocab = vocabulary_from_dict(event.document, f"vocabulary event {printable(event.name, 100)!r} v{event.version}")
        accepted = self.settings.accepted_vocabularies
        if accepted and vocab.name not in accepted:
            raise VocabularyRejected(f"this worker accepts the vocabularies {', '.join(sorted(accepted))}, "
                                     f"not {vocab.name!r} (COLUMNIST_ACCEPT_VOCABULARIES)")
        if event.content_hash != vocab.content_hash():
            raise VocabularyRejected(f"content_hash {printable(event.content_hash, 12)}... does not match the document "
                                     f"({vocab.content_hash()[:12]}...)")
        return vocab

    async def apply_vocabulary(self, vocab: Vocabulary) -> None:
        """Plan the change (its new prompts encoded beside ingest), switch ingest to the new
        vocabulary under the vocabulary lock, then replay stored embeddings in checkpointed
        chunks beside ingest, and record the vocabulary as applied.

        Only the switch holds the lock: a batch being scored finishes its write first and the
        batches after it score with the new vocabulary, so no batch mixes the two, and the
        replay (and its final pass, and the removal of dropped attributes) runs after every
        row written under the old one; ingest never waits for a replay. While ClickHouse is
        unavailable it retries (the job resumes from its checkpoints); on any other failure
        the worker goes back to the vocabulary it had."""
        name = vocab.name
        change = await until_done(lambda: self.on(self.prompt_executor, plan_change, self.store, self.encoder,
                                                  self.vocabs.get(name), vocab, self.texts.get(name), self.prompts),
                                  f"planning vocabulary {name} v{vocab.version}", retry_if=_store_away)
        second = self.second  # a migration's target: the change reaches its scores too
        alongside = [(second.encoder, await until_done(lambda: self.on(
            self.prompt_executor, plan_change, self.store, second.encoder, self.vocabs.get(name), vocab,
            self.migration.texts.get(name), PromptCache(second.encoder, self.store)),
            f"planning vocabulary {name} v{vocab.version} for {second.encoder.name}", retry_if=_store_away))] \
            if second is not None else []
        async with self.batches_settled():
            old, old_texts = self.vocabs.get(name), self.texts.get(name)
            old_target_texts = self.migration.texts.get(name)
            self.vocabs[name], self.texts[name] = vocab, change.texts
            if alongside and self.second is second:
                self.migration.texts[name] = alongside[0][1].texts
            self.migration.refresh()
        try:
            report = await until_done(lambda: self.on(self.replay_executor, lambda: carry_out(
                self.store, self.encoder, change, self.settings.replay_chunks, default_view=name == self.configured.name,
                start_at=self.replay_start, alongside=alongside)), f"applying vocabulary {name} v{vocab.version}",
                retry_if=_store_away)
        except BaseException as err:
            async with self.batches_settled():
                await self._fall_back(name, vocab, old, old_texts)
                if self.vocabs.get(name) is not vocab:
                    if old_target_texts is None:
                        self.migration.texts.pop(name, None)
                    else:
                        self.migration.texts[name] = old_target_texts
                self.migration.refresh()
            if isinstance(err, Exception) and old is not None and self.vocabs.get(name) is old:
                await self._give_up(vocab, old, [(self.encoder, old_texts)]
                                    + ([(second.encoder, old_target_texts)] if second is not None else []))
            raise
        diff, replay = report.diff, report.replay
        self.write_sidecars(None)  # every image's scores of this vocabulary may have moved
        self.counters.replays += 1
        self.counters.replay_chunks_written += replay.chunks - replay.chunks_skipped
        self.counters.replayed_score_rows += replay.score_rows + replay.late_score_rows
        log.info("vocabulary %s v%d applied: added %s, changed %s, removed %s, dependents %s; %d scores of "
                 "those attributes written, computed from stored embeddings (%d of %d chunks were already done)",
                 vocab.name, vocab.version, list(diff.added), list(diff.changed), list(diff.removed),
                 list(diff.dependents), report.stored_scores, replay.chunks_skipped, replay.chunks)

    async def _give_up(self, failed: Vocabulary, kept: Vocabulary, models: list[tuple["Encoder", Texts]]) -> None:
        """Back on ``kept`` after a failed change: what was scored with ``failed`` meanwhile
        (the replay's finished chunks, the batches ingested while it was in use) is scored
        again with ``kept`` (vocabulary_change.give_up), beside ingest, for each model."""
        for encoder, texts in models:
            what = f"scoring {failed.name} v{failed.version}'s images again with v{kept.version} for {encoder.name}"
            if not texts:
                log.error("%s: the texts of v%d are not known here; they keep scores of v%d", what, kept.version,
                          failed.version)
                continue
            try:
                images = await until_done(lambda encoder=encoder, texts=texts: self.on(
                    self.replay_executor, give_up, self.store, encoder, failed, kept, texts,
                    kept.name == self.configured.name), what, retry_if=_store_away)
            except Exception as err:  # noqa: BLE001 - the change's own failure is what is raised
                log.error("%s failed: %s; they keep scores of v%d", what, printable(str(err), 300), failed.version)
                continue
            if images is None:
                log.warning("%s: not done, the store has moved past v%d meanwhile", what, kept.version)
            else:
                log.warning("vocabulary %s v%d given up: %d images it reached scored again with v%d (%s)",
                            failed.name, failed.version, images, kept.version, encoder.name)

    async def _fall_back(self, name: str, failed: Vocabulary, old: Vocabulary | None, old_texts: Texts | None) -> None:
        """After a failed change: stay on the new vocabulary if the store recorded it (so no
        batch writes old scores over it), else go back to the old one."""
        try:
            recorded = await self.run_blocking(self.store.applied_vocabulary, name)
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
            "ready": self.ready,
            "model": self.encoder.name,
            "runtime": self.encoder.runtime,
            "runtime_choice": self.encoder.choice.describe() if self.encoder.choice else "",
            "database": self.store.dsn,
            "vocabulary": _describe(self.vocab) if self.vocab else None,
            "models": self.migration.status(await self._model_state()),
            "vocabularies": [_describe(v) for v in self.vocabs.values()],
            "counters": asdict(self.counters),
        }


    async def _model_state(self):
        """On the write thread: a status asked for during ingest does not wait for an encode
        (nor take the encoder's thread between two batches)."""
        try:
            return await self.on(self.write_executor, self.store.model_state)
        except Exception:  # noqa: BLE001 - the status says what it can without the store
            return None


def _counted_again(counted: Counters, before: Prepared, again: Prepared) -> Counters:
    """What a batch prepared a second time adds to the counts: its decoding and time, and the
    events that failed only this time (the others were counted by the first preparation)."""
    failed_before = {id(rejected.event) for rejected in before.rejected}
    return Counters(images_decoded=counted.images_decoded, fetch_decode_s=counted.fetch_decode_s,
                    images_failed=sum(id(rejected.event) not in failed_before for rejected in again.rejected))


def _store_away(err: BaseException) -> bool:
    """What a vocabulary change waits out (retrying), rather than gives up on."""
    return isinstance(err, StoreUnavailable)


def _event_name(raw: bytes | None) -> str:
    """The ``name`` a vocabulary event gives, if it gives one (bounded; '' otherwise)."""
    try:
        return str(parse_vocab_event(raw).name)[:256]
    except Exception:  # noqa: BLE001 - an event that does not parse has no name
        return ""


def _describe(vocab: Vocabulary) -> dict:
    return {"name": vocab.name, "version": vocab.version, "content_hash": vocab.content_hash(),
            "attributes": len(vocab.codes)}
