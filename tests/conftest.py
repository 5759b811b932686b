"""Shared fixtures. The ClickHouse engine is real: chdb, the ClickHouse engine in-process.

chdb lets one process open one database path, so the whole test session shares one path and
each test starts from emptied tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "photos"
SPACE_YAML = REPO / "vocab" / "space.yaml"
TABLES = ["images", "image_embedding", "feature_image_attribute", "vocabulary", "vocabulary_applied", "replay_checkpoint",
          "prompt_embedding", "video_frames", "vocabulary_refused", "search_phrase", "model_state", "reembed_missing"]


def pytest_collection_modifyitems(items):
    """Tests that need the Kafka broker (a JVM) are marked ``kafka``: `make test-fast` runs the
    rest, the whole suite runs everything."""
    for item in items:
        if "kafka_backend" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(autouse=True)
def no_tower_deadline():
    """No deadline on tower calls unless a test sets one: a Service's start or a tag sets the
    process's, which would outlive its test (and replace pytest's own faulthandler timer)."""
    from columnist import tower_watch

    tower_watch.configure(0, 32)
    yield
    tower_watch.configure(0, 32)


@pytest.fixture(autouse=True)
def own_stuck_decode_list(tmp_path):
    """Each test's own list of contents whose decoding got stuck (not the user's run folder)."""
    from columnist import decode_watch

    decode_watch.configure(tmp_path / "run")


@pytest.fixture(scope="session")
def session_dsn(tmp_path_factory):
    """The one embedded database this test process may open (chdb: one path a process)."""
    return f"chdb://{tmp_path_factory.mktemp('chdb') / 'db'}"


@pytest.fixture(scope="session")
def session_store(session_dsn):
    from columnist.store import connect

    store = connect(session_dsn)
    yield store
    store.close()


@pytest.fixture
def store(session_store):
    """The session's store with every table emptied."""
    for table in TABLES:
        session_store.client.command(f"TRUNCATE TABLE IF EXISTS columnist.{table}")
    _, views = session_store.query("SELECT name FROM system.tables WHERE database = 'columnist' "
                                   "AND (name = 'image_columns' OR name LIKE 'columns\\_%')")
    for (view,) in views:
        session_store.client.command(f"DROP VIEW IF EXISTS columnist.{view}")
    session_store._state_seen = False  # the model that writes first serves, as in a new store
    return session_store


@pytest.fixture
def space_vocab():
    from columnist.vocab.schema import load_vocabulary

    return load_vocabulary(SPACE_YAML)
