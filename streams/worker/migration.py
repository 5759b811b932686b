"""The worker's side of a model migration (columnist.model_change).

The store holds the state (which model serves, which one the store moves to); model events
on the vocabulary topic, which every worker reads, say what to do next (migrate, cutover,
retire). A worker carries out the step (the first to do so changes the state; the others
find it done), then follows the store's state: it loads the target and encodes every batch
with it too, runs the re-embed job beside ingest (checkpointed chunks that the workers of one
store split), switches its ingest to the new model at a cutover, and drops the old one.

A re-embed batch is scored and written under the worker's vocabulary lock, like an ingest
batch, so a vocabulary change never leaves it scored with the version the worker left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

from columnist import model_change, tower_watch
from columnist.kafka.events import MODEL_KEY, EventError, parse_model_event
from columnist.pipeline import SecondModel
from columnist.printable import printable
from columnist.prompt_cache import PromptCache
from columnist.records import Counters, ModelState
from columnist.store import ModelMovedOn, check_model
from columnist.vocab.prompts import text_embeddings
from columnist.worker.fetch import fetch

if TYPE_CHECKING:
    from columnist.kafka.events import ModelEvent
    from columnist.models.encoder import Encoder
    from columnist.records import RawEvent
    from columnist.worker.service import Service

log = logging.getLogger("columnist.worker")

CATCH_UP_S = 30.0
"""While a migration runs, how often a worker looks for images the target still lacks (a
batch prepared before the worker took the target up is written without it)."""


class Migration:
    def __init__(self, service: "Service", load_model: Callable[[str], "Encoder"]):
        self.service, self.load_model = service, load_model
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-reembed")
        self.job: model_change.Reembedder | None = None
        self.task: asyncio.Task | None = None
        self.counters = Counters()
        self.texts: dict[str, dict] = {}
        """The target's text embeddings of each vocabulary the worker scores with."""
        self.target_ref = ""
        self.remaining: int | None = None
        self.started: float | None = None
        self.error = ""
        self.caught_up: asyncio.Event | None = None
        """Set when this worker's run of the job has gone through every chunk and found nothing
        left that it can read (made in the loop, by start)."""

    # -- start-up (blocking) -------------------------------------------------------------

    def check_serving(self) -> ModelState | None:
        """The store's state, once the worker's encoder is the one it serves: a worker set to a
        model the store moved away from takes the one it serves (said in the log)."""
        service = self.service
        try:
            state = check_model(service.store, service.encoder.name)
        except ModelMovedOn as moved:
            log.warning("%s: using %s (set COLUMNIST_MODEL=%s)", moved, moved.state.serving_ref,
                        moved.state.serving_ref)
            service.use_encoder(self.load_model(moved.state.serving_ref))
            state = moved.state
        service.store.remember_ref(service.encoder.name, getattr(service.encoder, "ref", service.encoder.name))
        return state

    def take_up(self, state: ModelState | None) -> None:
        """Encode with the migration's target too, if the store moves to one (blocking)."""
        if state is not None and state.target:
            self._set_second(self._second_for(state))

    # -- events and the state ----------------------------------------------------------------

    async def event(self, event: "RawEvent") -> None:
        """Carry out a model event's step (refused steps are logged: another worker may have
        done it), then follow the store's state."""
        service = self.service
        try:
            command = parse_model_event(event.value)
        except Exception as err:  # what the key made it: a vocabulary keyed so reads as a broken model event
            await service.refuse_event(event, EventError(f"a model event (key {MODEL_KEY.decode()}): {err}"))
            return
        try:
            await service.on(self.executor, self._carry_out, command)
        except model_change.NothingToDo as err:
            log.info("model %s: nothing to do (%s)", command.action, printable(err, 300))
        except model_change.MigrationRefused as err:
            log.warning("model %s: %s", command.action, printable(err, 1000))
        except Exception as err:  # noqa: BLE001 - a step that fails is logged; the state says what holds
            log.error("model %s failed: %s: %s", command.action, type(err).__name__, printable(err, 1000))
            self.error = f"{command.action}: {err}"[:500]
        await self.follow()

    def _carry_out(self, command: "ModelEvent") -> None:
        store = self.service.store
        if command.action == "migrate":
            target = self._loaded(command.to)
            before = store.model_state()
            model_change.begin(store, target, command.to)
            if before is None or before.target != target.name:
                log.info("model migration to %s begun: new images are encoded with both models", target.name)
        elif command.action == "cutover":
            state, found = model_change.cutover(store, command.to, command.force)
            log.info("cut over to %s%s", state.serving, f" ({found.lacking} images lack it)" if found.lacking else "")
        else:
            report = model_change.retire(store, command.model)
            log.info("retired %s: %s rows deleted, %.1f MB freed", command.model, sum(report.rows.values()),
                     report.freed_bytes / 1e6)

    def _loaded(self, ref: str) -> "Encoder":
        second = self.service.second
        if second is not None and ref in (second.encoder.name, self.target_ref):
            return second.encoder
        return self.load_model(ref)

    async def follow(self) -> None:
        """Make the worker's models what the store's state says (after a step, by any worker)."""
        service = self.service
        state = await service.run_blocking(service.store.model_state)
        if state is None:
            return
        if state.serving != service.encoder.name:
            await self._serve(state)
        second = service.second
        if state.target and (second is None or second.encoder.name != state.target):
            loaded = await service.on(self.executor, self._second_for, state)
            async with service.batches_settled():
                self._set_second(loaded)
            self.start()
        elif not state.target and second is not None:
            await self.stop()
            async with service.batches_settled():
                service.second = None

    async def _serve(self, state: ModelState) -> None:
        """Switch ingest to the model the store now serves (the cutover's target, usually the
        one already encoded alongside)."""
        service = self.service
        second = service.second
        await self.stop()
        if second is not None and second.encoder.name == state.serving:
            encoder, texts = second.encoder, dict(self.texts)
        else:
            encoder = await service.on(self.executor, self.load_model, state.serving_ref)
            prompts = PromptCache(encoder, service.store, service.counters)
            texts = {name: await service.on(self.executor, text_embeddings, prompts, vocab)
                     for name, vocab in service.vocabs.items()}
        async with service.batches_settled():
            service.use_encoder(encoder)
            service.texts.update(texts)
            service.second = None
        log.info("now serving %s (the store cut over)", encoder.name)
        service.write_sidecars(None)  # the new model's scores

    def _second_for(self, state: ModelState) -> SecondModel | None:
        """The target, loaded, with its texts of every vocabulary the worker scores with."""
        try:
            target = self._loaded(state.target_ref)
        except Exception as err:  # noqa: BLE001 - this worker cannot help: said, and the job falls to others
            self.error = f"cannot load {state.target_ref}: {err}"[:500]
            log.error("the store moves to %s, which this worker cannot load (%s): it encodes new images with %s "
                      "only, and other workers' re-embed job covers them", state.target_ref, printable(err, 300),
                      self.service.encoder.name)
            return None
        self.target_ref = state.target_ref
        prompts = PromptCache(target, self.service.store, self.service.counters)
        self.texts = {name: text_embeddings(prompts, v) for name, v in self.service.vocabs.items()}
        return SecondModel(target, [])

    def _set_second(self, second: SecondModel | None) -> None:
        """(Under the vocabulary lock, once the loop runs.)"""
        self.service.second = second
        self.refresh()
        if second is not None:
            log.info("encoding new images with %s too (the store moves to it)", second.encoder.name)

    def refresh(self) -> None:
        """The target's vocabularies after the worker's changed (under the vocabulary lock)."""
        second = self.service.second
        if second is not None:
            second.vocabularies = [(v, self.texts[name]) for name, v in self.service.vocabs.items()
                                   if name in self.texts]

    # -- the re-embed job ----------------------------------------------------------------

    def start(self) -> None:
        """Run the re-embed job beside ingest (once the event loop runs)."""
        if self.service.second is not None and (self.task is None or self.task.done()):
            self.caught_up = asyncio.Event()
            self.task = asyncio.create_task(self._run(self.service.second), name="columnist-reembed")

    async def _run(self, second: SecondModel) -> None:
        service = self.service
        loop = asyncio.get_running_loop()

        def guard(work):  # from the job's thread: the scoring and writing under the vocabulary lock
            future = asyncio.run_coroutine_threadsafe(self._locked(work), loop)
            while True:
                try:
                    return future.result(timeout=1.0)
                except TimeoutError:
                    if job.stopped.is_set():
                        future.cancel()
                        raise model_change.JobStopped("stopped") from None

        job = model_change.Reembedder(service.store, second.encoder, lambda: second.vocabularies,
                                      lambda uri: fetch(uri, service.policy), service.limits,
                                      service.settings.batch_size, self.counters, guard, service.settings.replay_chunks)
        self.job, self.started = job, time.monotonic()
        try:
            self.remaining = await service.on(self.executor, job.remaining)
            report = await service.on(self.executor, job.run, service.replay_start, self._embedded)
            log.info("re-embed with %s: %d images embedded by this run (%d of %d chunks were done before, by another "
                     "worker or an earlier run), %d could not be read again", second.encoder.name, report.images,
                     report.chunks_skipped, report.chunks, len(report.missing))
            self.caught_up.set()
            while True:
                self.remaining = await service.on(self.executor, job.remaining)
                await asyncio.sleep(CATCH_UP_S)  # a periodic pass while the migration runs, not a synchronisation
                await service.on(self.executor, job.catch_up)
        except model_change.JobStopped:
            pass
        except Exception as err:  # noqa: BLE001 - the job's failure is logged and shown; ingest goes on
            self.error = f"re-embed: {type(err).__name__}: {err}"[:500]
            log.error("the re-embed job with %s failed: %s (run it again: columnist model migrate --to %s "
                      "--publish)", second.encoder.name, printable(err, 500), second.encoder.name)

    def _embedded(self, count: int) -> None:
        self.service.counters.reembedded = self.counters.reembedded
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - count)

    async def _locked(self, work):
        async with self.service.batches_settled():
            target = self.service.second.encoder.name if self.service.second else "the target"
            doing = f"a batch of the re-embed job with {target}"
            return await self.service.run_blocking(tower_watch.doing(doing, work))

    async def stop(self) -> None:
        """End the re-embed job between two batches (what it wrote stays)."""
        if self.job is not None:
            self.job.stopped.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it ends either way
                pass
        self.job = self.task = None
        self.remaining = None

    def status(self, state: ModelState | None) -> dict:
        rate = self.counters.reembedded / (time.monotonic() - self.started) if self.started else 0.0
        reembed = {"embedded_here": self.counters.reembedded, "remaining": self.remaining,
                   "rate_img_s": round(rate, 2),
                   "eta_s": round(self.remaining / rate) if rate and self.remaining else None}
        return {"serving": self.service.encoder.name, "target": state.target if state else "",
                "previous": state.previous if state else "", "encoding_with": [
                    self.service.encoder.name, *([self.service.second.encoder.name] if self.service.second else [])],
                "reembed": reembed if self.job is not None or self.remaining is not None else {},
                "error": self.error}
