"""The embedded engine's merge threads run at a lower priority than queries."""

import os
import threading
from pathlib import Path

import pytest

from columnist.store.merge_priority import MERGE_NICE, MERGE_THREAD, merges_yield

linux_only = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are listed from /proc")
not_niced = pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) >= MERGE_NICE,
                               reason="the tests already run at the merges' nice value: nothing to lower them to")


def thread_nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@linux_only
@not_niced
@pytest.mark.integration
def test_the_engines_merge_threads_yield_once_a_store_is_open(session_store):
    """Fails if chdb renames its merge threads: then merges compete with dashboards again."""
    names = {task: (task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()}
    merge_threads = [int(task.name) for task, name in names.items() if name == MERGE_THREAD]
    assert merge_threads, sorted(set(names.values()))
    assert all(thread_nice(tid) >= MERGE_NICE for tid in merge_threads)
    assert thread_nice(threading.get_native_id()) < MERGE_NICE  # the thread that queries keeps its priority


@linux_only
@not_niced
def test_only_threads_named_as_merges_are_changed_and_never_raised_in_priority(tmp_path):
    """A fake task list holds two real threads of this test: one named as a merge thread and
    one not; and a third entry that is not a thread id."""
    ready, done = threading.Event(), threading.Event()
    tids = []

    def idle():
        tids.append(threading.get_native_id())
        if len(tids) == 2:
            ready.set()
        done.wait()

    threads = [threading.Thread(target=idle) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
        merge, other = tids
        for tid, name in ((merge, MERGE_THREAD), (other, "QueryPipeline"), ("not-a-tid", MERGE_THREAD)):
            (tmp_path / str(tid)).mkdir()
            (tmp_path / str(tid) / "comm").write_text(name + "\n")
        before = thread_nice(other)
        assert merges_yield(tasks=tmp_path) == 1
        assert thread_nice(merge) == MERGE_NICE and thread_nice(other) == before
        assert merges_yield(tasks=tmp_path) == 0  # already yielding
        assert merges_yield(nice=MERGE_NICE - 5, tasks=tmp_path) == 0  # a lower value is never set back
        assert thread_nice(merge) == MERGE_NICE
    finally:
        done.set()
        for thread in threads:
            thread.join()


def test_no_thread_list_changes_nothing(tmp_path):
    assert merges_yield(tasks=tmp_path / "absent") == 0
