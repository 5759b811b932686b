"""The embedded engine's merges yield the CPU to queries, ingest and replay.

Right after a vocabulary change, ClickHouse merges the replay's fresh parts in the
background for tens of seconds: on two cores its merge threads took 1.5 cores, and the
wide-view dashboard over 1M images x 50 attributes took 1.4-2.2 s instead of the 0.7-0.9 s it
takes once merged (with merges stopped, the unmerged parts read as fast as the merged one:
the cost was the CPU, not the parts). A ClickHouse server has a setting for this
(``os_threads_nice_value_merge_mutate``, from 25.9, with CAP_SYS_NICE); in the embedded
engine columnist raises the nice value of the engine's merge threads in its own process,
which needs no privilege. At nice 19 a merge gets what nothing else in the process wants:
all of an idle CPU, and the fifth of two cores a busy worker leaves (its encoder waits on
its slowest thread at every step). Were merges to fall far behind, ClickHouse delays
inserts until they catch up (``parts_to_delay_insert``): ingest slows, nothing is lost.

The same threads run mutations, so a DELETE (deleted images, a removed attribute, a
video's stale frames), which waits for its mutation, waits a little longer under load:
deleting 1M of 50M score rows with two other threads busy took 0.6-1.0 s at nice 0 and
0.7-1.3 s at nice 19 (0.99-1.25 s at nice 10). A process that closes its last store and
opens another keeps the former merge threads at this nice value in the engine's common pool.
"""

from __future__ import annotations

import os
from pathlib import Path

MERGE_THREAD = "MergeMutate"
"""The name the engine gives its merge and mutation threads (/proc/self/task/*/comm)."""

MERGE_NICE = 19


def merges_yield(nice: int = MERGE_NICE, tasks: Path = Path("/proc/self/task")) -> int:
    """Raise the merge threads' nice value to ``nice`` (never lowers one); the number of
    threads changed. The engine starts its merge threads with its first database and keeps
    them, so once per process after connecting is enough. Where threads cannot be listed
    (no /proc) this does nothing: merges compete as before, nothing fails."""
    changed = 0
    try:
        threads = list(tasks.iterdir())
    except OSError:
        return 0
    for thread in threads:
        try:
            if (thread / "comm").read_text().strip() != MERGE_THREAD:
                continue
            tid = int(thread.name)
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
        except (OSError, ValueError):  # the thread ended meanwhile, or a name that is no thread id
            continue
    return changed
