"""Chunks of a long job that several workers split, and a crash resumes (``replay_checkpoint``).

A job (a vocabulary change's replay, a model migration's re-embed) is cut into a fixed number
of chunks. A worker claims a chunk (a row without a finish time) before it works on it and
finishes it (the same row with a finish time); it first takes only chunks nobody has claimed,
going round the ring from its own place, so N workers split the job instead of doing it N
times; then it does any chunk claimed but never finished (a worker that died, or one still at
it: the work is idempotent). So every chunk is done, and in the common case once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from columnist import faults

if TYPE_CHECKING:
    from columnist.store import Statements

BUCKETS = 64
"""Jobs are cut by cityHash64(image_id) % BUCKETS (image_embedding's ``bucket`` column), so a
job has at most this many chunks."""


def chunks_for(rows: int, per_chunk: int) -> int:
    """Chunks of about ``per_chunk`` rows each for a job of ``rows`` rows (1 to BUCKETS)."""
    return max(1, min(BUCKETS, -(-rows // per_chunk)))


def buckets_of(chunk: int, chunks: int) -> list[int]:
    """The buckets of chunk ``chunk`` of ``chunks``."""
    return [b for b in range(BUCKETS) if b % chunks == chunk]


class Checkpoints:
    """The checkpoint rows of one job: ``name`` (a vocabulary, or '' for a model's job), ``job``
    (what identifies it: a document's content hash, ``model <name>``) and its chunk count."""

    def __init__(self, store: "Statements", name: str, job: str, chunks: int):
        self.store, self.name, self.job = store, name, job
        self.chunks = self.chunks_of_job() or chunks  # every run of a job cuts it the same way

    def _key(self) -> dict:
        return {"v": self.name, "j": self.job, "n": self.chunks}

    def run(self, start_at: int, do_chunk: Callable[[int], int], on_chunk: Callable[[int, int], None] | None = None,
            fault: str = "") -> tuple[int, set[int]]:
        """Do every chunk of the job that needs doing (see the module's docstring); the sum of
        what ``do_chunk`` returned, and the chunks this run did. ``fault``: the fault point
        (columnist.faults) passed after each finished chunk."""
        ring = [(start_at + step) % self.chunks for step in range(self.chunks)]
        total, mine = 0, set()
        for step, chunk in enumerate(ring):
            if chunk not in self.claimed():
                self.claim(chunk)
                total += self.do(chunk, do_chunk, fault)
                mine.add(chunk)
            if on_chunk:
                on_chunk(step + 1, self.chunks)
        for chunk in ring:
            if chunk not in mine and chunk not in self.finished():
                total += self.do(chunk, do_chunk, fault)
                mine.add(chunk)
        return total, mine

    def do(self, chunk: int, do_chunk: Callable[[int], int], fault: str = "") -> int:
        """One chunk, done and finished (claimed before, by this run or another)."""
        started_ms = int(time.time() * 1000)
        rows = do_chunk(chunk)
        self.finish(chunk, rows, started_ms)
        if fault:
            faults.point(fault)
        return rows

    def finished(self) -> set[int]:
        return self._chunks("AND toUnixTimestamp64Milli(done_at) > 0")

    def claimed(self) -> set[int]:
        """Chunks finished, or being worked on (by this run or another worker)."""
        return self._chunks("")

    def _chunks(self, condition: str) -> set[int]:
        _, rows = self.store.query(
            "SELECT chunk FROM columnist.replay_checkpoint FINAL WHERE vocab_name = {v:String} "
            f"AND job = {{j:String}} AND chunks = {{n:UInt32}} {condition}", self._key())
        return {r[0] for r in rows}

    def chunks_of_job(self) -> int:
        """The chunk count of this job's existing checkpoints (0: none yet)."""
        return int(self.store.scalar("SELECT max(chunks) FROM columnist.replay_checkpoint "
                                     "WHERE vocab_name = {v:String} AND job = {j:String}",
                                     {"v": self.name, "j": self.job}) or 0)

    def first_started_ms(self) -> int | None:
        """When the job's first chunk was claimed (ms since the epoch), or None."""
        _, rows = self.store.query(
            "SELECT toUnixTimestamp64Milli(min(started_at)) FROM columnist.replay_checkpoint FINAL "
            "WHERE vocab_name = {v:String} AND job = {j:String} AND chunks = {n:UInt32}", self._key())
        return rows[0][0] if rows and rows[0][0] else None

    def claim(self, chunk: int) -> None:
        """A checkpoint row without a finish time (done_at 0); the finished one replaces it."""
        self.store.command(
            "INSERT INTO columnist.replay_checkpoint (vocab_name, job, chunks, chunk, score_rows, started_at, done_at) "
            "VALUES ({v:String}, {j:String}, {n:UInt32}, {c:UInt32}, 0, now64(3), fromUnixTimestamp64Milli(0))",
            {**self._key(), "c": chunk})

    def finish(self, chunk: int, rows: int, started_ms: int) -> None:
        self.store.command(
            "INSERT INTO columnist.replay_checkpoint (vocab_name, job, chunks, chunk, score_rows, started_at, done_at) "
            "VALUES ({v:String}, {j:String}, {n:UInt32}, {c:UInt32}, {r:UInt64}, fromUnixTimestamp64Milli({s:Int64}), "
            "now64(3))", {**self._key(), "c": chunk, "r": rows, "s": started_ms})

    def forget(self) -> None:
        self.store.command("DELETE FROM columnist.replay_checkpoint WHERE vocab_name = {v:String} AND job = {j:String}",
                           {"v": self.name, "j": self.job})
