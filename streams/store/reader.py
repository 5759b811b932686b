"""Reading the store from the CLI: directly, or through the worker that owns it.

chdb lets one process open a database path at a time. While a worker runs on an embedded
database, the CLI sends its read-only queries to that worker on 127.0.0.1 instead.
"""

from __future__ import annotations

import http.client
import json
import socket
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from columnist.settings import Settings


class StoreLocked(RuntimeError):
    pass


class QueryFailed(RuntimeError):
    pass


@contextmanager
def _stderr_captured():
    """The embedded engine prints its own errors on file descriptor 2; hold them back."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield capture
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def connect_store(dsn: str, settings: Settings):
    """Open the store, or raise StoreLocked when another process owns the embedded database."""
    from columnist.store import connect
    from columnist.store.clickhouse import normalise_dsn

    with _stderr_captured() as captured:
        try:
            return connect(dsn, settings.cluster)
        except Exception as err:
            captured.seek(0)
            engine_said = captured.read().decode(errors="replace")
            if "Cannot lock file" in engine_said or "Cannot lock file" in str(err):
                raise StoreLocked(f"the database {normalise_dsn(dsn)} is in use by another process "
                                  "(a running worker?)") from None
            sys.stderr.write(engine_said)
            raise


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


class WorkerClient:
    """The worker's control page (streams.worker.control) on its Unix socket."""

    def __init__(self, path: Path, timeout: float = 60):
        self.path, self.timeout = path, timeout

    def _call(self, path: str, body: dict | None = None, raw: bool = False) -> Any:
        connection = _UnixHTTPConnection(self.path, self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request("POST" if data is not None else "GET", path, body=data,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
        except OSError as err:
            raise ConnectionError(f"no worker answers on {self.path}: {err.strerror or err}") from None
        finally:
            connection.close()
        if raw and response.status == 200:
            return payload
        try:
            answer = json.loads(payload)
        except ValueError:
            raise QueryFailed(f"HTTP {response.status}: {payload[:200]!r}") from None
        if response.status != 200:
            raise QueryFailed(answer.get("error", f"HTTP {response.status}") if isinstance(answer, dict) else answer)
        return answer

    def status(self) -> dict:
        return self._call("/status")

    def summary(self) -> dict:
        return self._call("/summary")

    def query(self, sql: str) -> tuple[list[str], list[list]]:
        answer = self._call("/query", {"sql": sql})
        return answer["columns"], answer["rows"]

    def query_raw(self, sql: str, fmt: str) -> bytes:
        return self._call("/query", {"sql": sql, "format": fmt}, raw=True)


class Reader:
    """query(sql) against the store if this process can open it, else through the worker."""

    def __init__(self, dsn: str, settings: Settings):
        self.store, self.worker = None, None
        try:
            self.store = connect_store(dsn, settings)
        except StoreLocked:
            from columnist.worker.control import socket_path

            self.worker = WorkerClient(socket_path(settings))

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
