"""A client of the worker's control page (worker.control), on its Unix socket."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from columnist.errors import ColumnistError


class QueryFailed(ColumnistError, RuntimeError):
    """The database (or the worker's guard) refused or failed a query; the message says why."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


class WorkerClient:
    def __init__(self, path: Path, timeout: float = 60):
        self.path, self.timeout = Path(path), timeout

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
