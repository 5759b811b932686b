"""`columnist watch`'s logic (columnist.watch.Watcher) on a real folder, with the Kafka producer
replaced by a list (a stand-in: the stream test in tests/streams/worker runs it on Kafka):
what appears, changes, settles, goes and moves is published once, and a restart publishes
only what changed while it was away."""

from __future__ import annotations

import shutil

from columnist.watch import Watcher, WatchState
from tests.conftest import PHOTOS


def watcher(folder, state_file, sent):
    return Watcher([folder], "", WatchState(state_file),
                   lambda images, gone: sent.append(([i for i, _ in images], list(gone))), settle=0)


def test_a_folder_publishes_what_appears_changes_and_goes_once(tmp_path):
    folder, state = tmp_path / "library", tmp_path / "state.sqlite"
    folder.mkdir()
    shutil.copy(PHOTOS / "moon.jpg", folder / "moon.jpg")
    (folder / "notes.txt").write_text("not a photo")
    sent = []
    first = watcher(folder, state, sent)
    caught = first.catch_up()
    assert sent == [([(folder / "moon.jpg").as_uri()], [])] and caught.skipped == {".txt": 1}

    copy = folder / "trip" / "rocket.jpg"
    copy.parent.mkdir()
    with open(copy, "wb") as partial:  # a copy in progress: seen, not published until it settles
        partial.write((PHOTOS / "rocket.jpg").read_bytes()[:1000])
        first.changed([("added", str(copy))])
        first.tick()
        partial.write((PHOTOS / "rocket.jpg").read_bytes()[1000:])
    first.tick()  # its size changed since it was seen: waits again
    assert len(sent) == 1
    first.tick()
    assert sent[-1] == ([copy.as_uri()], [])

    (folder / "moon.jpg").unlink()
    first.changed([("deleted", str(folder / "moon.jpg"))])
    assert sent[-1] == ([], [(folder / "moon.jpg").as_uri()])
    first.state.close()

    # while nobody watches: a new file, a changed one, a folder moved away
    shutil.copy(PHOTOS / "coffee.jpg", folder / "coffee.jpg")
    shutil.move(str(folder / "trip"), str(tmp_path / "elsewhere"))
    sent.clear()
    again = watcher(folder, state, sent)
    again.catch_up()
    assert sent == [([(folder / "coffee.jpg").as_uri()], [copy.as_uri()])]
    sent.clear()
    again.catch_up()
    assert sent == []  # nothing changed since: nothing published


def test_a_folder_moved_away_while_watched_deletes_what_was_in_it(tmp_path):
    folder, state = tmp_path / "library", tmp_path / "state.sqlite"
    (folder / "a").mkdir(parents=True)
    for name in ("moon.jpg", "rocket.jpg"):
        shutil.copy(PHOTOS / name, folder / "a" / name)
    sent = []
    watched = watcher(folder, state, sent)
    watched.catch_up()
    shutil.move(str(folder / "a"), str(tmp_path / "b"))
    watched.changed([("deleted", str(folder / "a"))])
    assert sorted(sent[-1][1]) == sorted((folder / "a" / n).as_uri() for n in ("moon.jpg", "rocket.jpg"))
