"""Reading the store from the CLI: directly, or through the worker that owns it.

chdb lets one process open a database path at a time. While a worker runs on an embedded
database, the CLI sends its read-only queries to that worker's control page instead (its
Unix socket, worker.control).
"""

from __future__ import annotations

from columnist.errors import Locked
from columnist.printable import printable
from columnist.settings import Settings
from columnist.store import StoreLocked, connect
from columnist.store.clickhouse import normalise_dsn
from columnist.worker.control_client import QueryFailed, WorkerClient


class OtherWorker(Locked):
    """The worker answering on the control socket serves another database than the one asked for."""


class Reader:
    """query(sql) against the store if this process can open it, else through the worker
    that owns it (checked: the worker on the socket must serve this very database)."""

    def __init__(self, dsn: str, settings: Settings):
        self.store, self.worker = None, None
        try:
            self.store = connect(dsn, settings.cluster, create=False)
        except StoreLocked as locked:
            self.worker = WorkerClient(settings.control_socket)
            try:
                serves = self.worker.status().get("database")
            except ConnectionError:
                raise locked from None
            if serves != normalise_dsn(dsn):
                raise OtherWorker(f"{normalise_dsn(dsn)} is in use by another process, and the worker on "
                                  f"{printable(settings.control_socket)} serves {printable(serves)}: set "
                                  "COLUMNIST_WORKER_PORT to the port of the worker that owns it") from None

    @property
    def via(self) -> str:
        return "store" if self.store else f"the worker on {self.worker.path}"

    def query(self, sql: str) -> tuple[list[str], list]:
        if self.store:
            try:
                return self.store.query(sql)
            except Exception as err:
                raise QueryFailed(str(err)) from None
        return self.worker.query(sql)

    def query_raw(self, sql: str, fmt: str) -> bytes:
        """The result in ClickHouse output format ``fmt``."""
        if self.store:
            try:
                return self.store.query_raw(sql, fmt)
            except Exception as err:
                raise QueryFailed(" ".join(str(err).split())[:2000]) from None
        return self.worker.query_raw(sql, fmt)

    def summary(self) -> dict:
        """Counts, applied vocabularies, scores per attribute (Store.summary)."""
        return self.store.summary() if self.store else self.worker.summary()

    def close(self) -> None:
        if self.store:
            self.store.close()
