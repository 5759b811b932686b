"""`columnist watch`'s logic (columnist.watch.Watcher) on a real folder, with the Kafka producer
replaced by a list (a stand-in: the stream test in tests/streams/worker runs it on Kafka):
what appears, changes, settles, goes and moves is published once, and a restart publishes
only what changed while it was away."""

from __future__ import annotations

import shutil

from columnist.tagger import skipped_summary
from columnist.watch import Watcher, WatchState
from tests.conftest import PHOTOS


def watcher(folder, state_file, sent):
    return Watcher([folder], "", WatchState(state_file),
                   lambda images, gone: sent.append(([i for i, _ in images], list(gone))), settle=0)


def caught_up(tmp_path, *photos):
    """A library holding ``photos`` (as name -> sample photo), watched and caught up: (folder,
    watcher, what it sent)."""
    folder, sent = tmp_path / "library", []
    folder.mkdir()
    for name, photo in photos:
        shutil.copy(PHOTOS / photo, folder / name)
    watched = watcher(folder, tmp_path / "state.sqlite", sent)
    watched.catch_up()
    return folder, watched, sent


def test_a_folder_publishes_what_appears_changes_and_goes_once(tmp_path):
    folder, state = tmp_path / "library", tmp_path / "state.sqlite"
    folder.mkdir()
    shutil.copy(PHOTOS / "moon.jpg", folder / "moon.jpg")
    (folder / "notes.txt").write_text("not a photo")
    sent = []
    first = watcher(folder, state, sent)
    caught = first.catch_up()
    assert sent == [([(folder / "moon.jpg").as_uri()], [])] and caught.skipped == {".txt": 1}
    assert skipped_summary(caught.skipped) == "1 .txt"  # what `columnist watch` prints once caught up

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


def test_a_file_deleted_and_written_again_within_one_debounce_is_published_not_deleted(tmp_path):
    """watchfiles hands a debounce's changes over as a set: 'added' may come before 'deleted'
    for a file removed and copied again; the file on disk decides."""
    folder, watched, sent = caught_up(tmp_path, ("f.jpg", "moon.jpg"))
    (folder / "f.jpg").unlink()
    shutil.copy(PHOTOS / "rocket.jpg", folder / "f.jpg")
    watched.changed([("added", str(folder / "f.jpg")), ("deleted", str(folder / "f.jpg"))])
    watched.tick()  # seen
    watched.tick()  # settled
    assert sent[1:] == [([(folder / "f.jpg").as_uri()], [])]  # new content published; never a deletion


def test_a_folder_moved_in_is_looked_over_and_too_many_changes_at_once_are_found_again(tmp_path, monkeypatch):
    import columnist.watch

    outside = tmp_path / "trip"
    (outside / "day1").mkdir(parents=True)
    for name in ("moon.jpg", "rocket.jpg", "coffee.jpg"):
        shutil.copy(PHOTOS / name, outside / "day1" / name)
    folder, watched, sent = caught_up(tmp_path)
    monkeypatch.setattr(columnist.watch, "MAX_PENDING", 2)
    shutil.move(str(outside), str(folder / "trip"))
    watched.changed([("added", str(folder / "trip"))])  # inotify names the folder only
    assert len(watched.pending) == 2 and watched.overflowed
    watched.tick()  # seen
    watched.tick()  # the two waiting are published, then the folders are looked over again
    published = sorted(uri for images, _ in sent for uri in images)
    assert published == sorted((folder / "trip" / "day1" / n).as_uri() for n in ("coffee.jpg", "moon.jpg", "rocket.jpg"))


def test_a_watch_state_that_is_not_one_is_named(tmp_path):
    import pytest

    from columnist.errors import ConfigurationError

    sqlite3 = __import__("sqlite3")
    for make in (lambda p: p.write_bytes(b"\x00garbage" * 100), lambda p: p.mkdir(),
                 lambda p: sqlite3.connect(p).execute("CREATE TABLE files (x)"),
                 lambda p: sqlite3.connect(p).execute("CREATE TABLE files (path, image_id, size, mtime_ns, extra)"),
                 lambda p: sqlite3.connect(p).execute("CREATE VIEW files AS SELECT 1 AS path")):
        path = tmp_path / f"state-{len(list(tmp_path.iterdir()))}.sqlite"
        make(path)
        with pytest.raises(ConfigurationError, match="not a watch state"):
            WatchState(path)


def test_what_never_settles_into_a_photo_does_not_hold_the_others_back_and_links_are_not_followed(tmp_path,
                                                                                                  monkeypatch):
    import os

    import columnist.watch

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(PHOTOS / "moon.jpg", outside / "secret.jpg")
    folder, watched, sent = caught_up(tmp_path)
    monkeypatch.setattr(columnist.watch, "MAX_PENDING", 2)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "link").symlink_to(outside)
    for name in ("rocket.jpg", "coffee.jpg", "astronaut.jpg"):
        shutil.copy(PHOTOS / name, folder / name)
    watched.changed([("added", str(folder / n)) for n in ("pipe.jpg", "link", "rocket.jpg", "coffee.jpg",
                                                           "astronaut.jpg")])
    watched.tick()
    watched.tick()
    published = sorted(uri for images, _ in sent for uri in images)
    assert published == sorted((folder / n).as_uri() for n in ("astronaut.jpg", "coffee.jpg", "rocket.jpg"))
    assert not watched.pending and not watched.overflowed


def test_a_file_that_became_a_folder_is_deleted(tmp_path):
    folder, watched, sent = caught_up(tmp_path, ("x.jpg", "moon.jpg"))
    (folder / "x.jpg").unlink()
    (folder / "x.jpg").mkdir()
    watched.changed([("added", str(folder / "x.jpg"))])
    assert sent[-1] == ([], [(folder / "x.jpg").as_uri()])


def test_two_folders_under_one_collection_never_publish_two_files_under_one_id(tmp_path):
    """a/moon.jpg and b/moon.jpg under --collection trip are both trip/moon.jpg: the second is
    named and counted, not published (it would replace the first's image, and a delete of
    either would forget both); once the first is gone, the next start publishes it."""
    first, second, sent = tmp_path / "a", tmp_path / "b", []
    for folder in (first, second):
        folder.mkdir()
        shutil.copy(PHOTOS / "moon.jpg", folder / "moon.jpg")
    shutil.copy(PHOTOS / "rocket.jpg", second / "rocket.jpg")
    state = tmp_path / "state.sqlite"

    def watching():
        return Watcher([first, second], "trip", WatchState(state),
                       lambda images, gone: sent.append((sorted((i, p.parent.name) for i, p in images), list(gone))),
                       settle=0)

    watched = watching()
    caught = watched.catch_up()
    assert sent == [([("trip/moon.jpg", "a"), ("trip/rocket.jpg", "b")], [])]
    assert caught.skipped == {"(image id of another file)": 1}
    (second / "moon.jpg").write_bytes((PHOTOS / "coffee.jpg").read_bytes())  # changed while watched: still not
    watched.changed([("modified", str(second / "moon.jpg"))])
    watched.tick()
    assert len(sent) == 1
    (first / "moon.jpg").unlink()
    watched.changed([("deleted", str(first / "moon.jpg"))])
    assert sent[-1] == ([], ["trip/moon.jpg"])
    watched.state.close()

    watching().catch_up()
    assert sent[-1] == ([("trip/moon.jpg", "b")], [])


def test_a_file_moved_to_the_same_id_in_another_folder_is_published_not_deleted(tmp_path):
    """Moved from a/ to b/ while nobody watched, under one collection: the same id, published
    again (from its new path) and not deleted after."""
    first, second, sent = tmp_path / "a", tmp_path / "b", []
    first.mkdir(), second.mkdir()
    shutil.copy(PHOTOS / "moon.jpg", first / "moon.jpg")
    state = tmp_path / "state.sqlite"

    def watching():
        return Watcher([first, second], "trip", WatchState(state),
                       lambda images, gone: sent.append(([(i, p.parent.name) for i, p in images], list(gone))),
                       settle=0)

    watching().catch_up()
    shutil.move(str(first / "moon.jpg"), str(second / "moon.jpg"))
    again = watching()
    again.catch_up()
    assert sent == [([("trip/moon.jpg", "a")], []), ([("trip/moon.jpg", "b")], [])]
    assert again.state.holders("trip/moon.jpg") == [str(second / "moon.jpg")]


def test_one_folder_watched_through_a_link_too_publishes_its_changes_and_deletions(tmp_path):
    """real/ and link/ (a link to real/) under one collection are one file per name: both paths
    hold its id, so an edit or a deletion seen through either path is published."""
    real, sent = tmp_path / "real", []
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    link = tmp_path / "link"
    shutil.copy(PHOTOS / "moon.jpg", real / "moon.jpg")
    watched = Watcher([real, link], "sym", WatchState(tmp_path / "state.sqlite"),
                      lambda images, gone: sent.append(([i for i, _ in images], list(gone))), settle=0)

    caught = watched.catch_up()
    assert sent == [(["sym/moon.jpg", "sym/moon.jpg"], [])] and not caught.skipped
    (real / "moon.jpg").write_bytes((PHOTOS / "coffee.jpg").read_bytes())
    watched.changed([("modified", str(link / "moon.jpg"))])  # inotify names the path it watches
    watched.tick()  # seen: settles from here
    watched.tick()
    assert sent[-1] == (["sym/moon.jpg"], [])
    (real / "moon.jpg").unlink()
    watched.changed([("deleted", str(link / "moon.jpg"))])
    assert sent[-1] == ([], ["sym/moon.jpg"])


def test_an_id_an_older_watch_gave_two_files_is_not_deleted_while_one_of_them_is_there(tmp_path):
    """An older watch published a/moon.jpg and b/moon.jpg both as trip/moon.jpg: b deleted, the
    id is published again from a, not deleted (a's photo would leave the store)."""
    import sqlite3

    first, second, sent = tmp_path / "a", tmp_path / "b", []
    state = tmp_path / "state.sqlite"
    with sqlite3.connect(state) as old:  # the table an older watch made, without the index
        old.execute("CREATE TABLE files (path TEXT PRIMARY KEY, image_id TEXT NOT NULL, size INTEGER NOT NULL, "
                    "mtime_ns INTEGER NOT NULL)")
        for folder in (first, second):
            folder.mkdir()
            shutil.copy(PHOTOS / "moon.jpg", folder / "moon.jpg")
            info = (folder / "moon.jpg").stat()
            old.execute("INSERT INTO files VALUES (?, 'trip/moon.jpg', ?, ?)",
                        (str(folder / "moon.jpg"), info.st_size, info.st_mtime_ns))
    old.close()
    watched = Watcher([first, second], "trip", WatchState(state),
                      lambda images, gone: sent.append(([(i, p.parent.name) for i, p in images], list(gone))),
                      settle=0)

    watched.catch_up()
    assert sent == []
    (second / "moon.jpg").unlink()
    watched.changed([("deleted", str(second / "moon.jpg"))])
    assert sent == [([("trip/moon.jpg", "a")], [])]
    (first / "moon.jpg").unlink()
    watched.changed([("deleted", str(first / "moon.jpg"))])
    assert sent[-1] == ([], ["trip/moon.jpg"])


def test_a_folder_inside_another_gives_its_files_the_outer_folders_ids_in_any_order(tmp_path):
    outer, sent = tmp_path / "p", []
    (outer / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS / "moon.jpg", outer / "x.jpg")
    shutil.copy(PHOTOS / "rocket.jpg", outer / "sub" / "x.jpg")
    for n, folders in enumerate(([outer / "sub", outer], [outer, outer / "sub"])):
        sent.clear()
        caught = Watcher(folders, "trip", WatchState(tmp_path / f"state{n}.sqlite"),
                         lambda images, gone: sent.append(sorted(i for i, _ in images)), settle=0).catch_up()
        assert sent == [["trip/sub/x.jpg", "trip/x.jpg"]] and not caught.skipped


def test_a_file_an_older_watch_gave_the_inner_folders_id_is_published_under_todays_and_the_old_id_deleted(tmp_path):
    """Watched as [p/sub, p], an older watch gave p/sub/x.jpg the id trip/x.jpg; today's is
    trip/sub/x.jpg: the next start publishes it under that and deletes trip/x.jpg (no file has
    it any more), and a later deletion of the file deletes today's id."""
    outer, sent = tmp_path / "p", []
    (outer / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS / "moon.jpg", outer / "sub" / "x.jpg")
    state = WatchState(tmp_path / "state.sqlite")
    info = (outer / "sub" / "x.jpg").stat()
    state.record([(str(outer / "sub" / "x.jpg"), "trip/x.jpg", info.st_size, info.st_mtime_ns)], [])
    watched = Watcher([outer / "sub", outer], "trip", state,
                      lambda images, gone: sent.append(([i for i, _ in images], list(gone))), settle=0)

    watched.catch_up()
    assert sent == [(["trip/sub/x.jpg"], ["trip/x.jpg"])]
    (outer / "sub" / "x.jpg").unlink()
    watched.changed([("deleted", str(outer / "sub" / "x.jpg"))])
    assert sent[-1] == ([], ["trip/sub/x.jpg"])
