"""Reading the store from the CLI: directly, or through the worker that owns it.

chdb lets one process open a database path at a time. While a worker runs on an embedded
database, the CLI sends its read-only queries to that worker on 127.0.0.1 instead.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from columnist.streams.settings import Settings


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
    from columnist.streams.store import connect
    from columnist.streams.store.clickhouse import normalise_dsn

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


class WorkerClient:
    """The worker's control page (columnist.streams.worker.control), with the secret from its token file."""

    def __init__(self, port: int, token_file: Path, timeout: float = 60):
        self.base, self.token_file, self.timeout = f"http://127.0.0.1:{port}", token_file, timeout

    def _token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except OSError as err:
            raise ConnectionError(f"no worker secret at {self.token_file} ({err.strerror}): is a worker running "
                                  f"on port {self.base.rsplit(':', 1)[1]} as this user?") from None

    def _call(self, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self._token()}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                message = json.loads(body).get("error", str(err))
            except ValueError:
                message = f"{err} {body[:200]!r}"
            raise QueryFailed(message) from None
        except OSError as err:
            raise ConnectionError(f"no worker answers at {self.base}: {err}") from None

    def status(self) -> dict:
        return self._call("/status")

    def summary(self) -> dict:
        return self._call("/summary")

    def query(self, sql: str) -> tuple[list[str], list[list]]:
        answer = self._call("/query", {"sql": sql})
        return answer["columns"], answer["rows"]


class Reader:
    """query(sql) against the store if this process can open it, else through the worker."""

    def __init__(self, dsn: str, settings: Settings):
        self.store, self.worker = None, None
        try:
            self.store = connect_store(dsn, settings)
        except StoreLocked:
            from columnist.streams.worker.control import token_path

            self.worker = WorkerClient(settings.worker_port, token_path(settings))

    @property
    def via(self) -> str:
        return "store" if self.store else f"worker at {self.worker.base}"

    def query(self, sql: str) -> tuple[list[str], list]:
        if self.store:
            try:
                return self.store.query(sql)
            except Exception as err:
                raise QueryFailed(str(err)) from None
        return self.worker.query(sql)

    def summary(self) -> dict:
        """Counts, applied vocabularies, scores per attribute (Store.summary)."""
        return self.store.summary() if self.store else self.worker.summary()

    def close(self) -> None:
        if self.store:
            self.store.close()
