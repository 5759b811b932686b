"""The worker's control page: its status, and guarded read-only queries, for the CLI.

chdb lets one process open a database path, so while a worker owns an embedded database
the CLI reads through it. The page is HTTP on a Unix socket, ``<run_dir>/worker-<port>.sock``
(mode 0600 in a 0700 folder the user owns, never a symbolic link): only the user running the
worker (and root) can connect, no other local process, no web page in a browser, no DNS
rebinding, and nobody else can hold its connections open. One worker per socket: a worker
refuses to start where another answers, and removes only the socket it made.

It serves ``GET /status`` (the worker, naming the database it serves), ``GET /summary`` (the
store's counts) and ``POST /query`` with a JSON body (one SELECT about columnist's own tables,
checked by store.query_guard, run with time, row, byte, memory and thread limits on its own
thread and its own connection, so a slow query never stalls ingest). Nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from columnist.errors import ConfigurationError, Locked
from columnist.printable import printable

if TYPE_CHECKING:
    from columnist.settings import Settings
    from columnist.store import Store

log = logging.getLogger("columnist.worker")
MAX_BODY = 256 * 1024


class SocketTaken(Locked):
    """Another worker serves this control socket."""


class UnsafeRunDir(ConfigurationError):
    """The run folder is a symbolic link, or someone else's."""


def prepare_run_dir(path: Path) -> None:
    """Make the folder of control sockets (0700), or check the one that is there: a real
    folder (not a link: chmod would follow it) owned by this user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeRunDir(f"{printable(path)} (COLUMNIST_RUN_DIR) is not a folder (a symbolic link?); "
                           "point COLUMNIST_RUN_DIR at a folder of your own")
    if info.st_uid != os.getuid():
        raise UnsafeRunDir(f"{printable(path)} (COLUMNIST_RUN_DIR) belongs to another user (uid {info.st_uid}); "
                           "point COLUMNIST_RUN_DIR at a folder of your own")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)


def claim_socket(path: Path) -> None:
    """Refuse to start where anything listens on ``path`` (another worker, even a stopped or
    slow one); clear a socket nobody listens on (a killed worker's: connecting is refused).
    Anything at the path that is not this user's socket is not ours to remove."""
    import errno
    import socket

    from columnist.worker.control_client import WorkerClient

    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise UnsafeRunDir(f"{printable(path)} exists and is not a control socket of this user; remove it or "
                           "choose another COLUMNIST_WORKER_PORT")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
    except OSError as err:
        if err.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)  # left by a worker that was killed
            return
        raise SocketTaken(f"{printable(path)} is in use (connecting: {err.strerror or err}): give this worker its own "
                          "COLUMNIST_WORKER_PORT") from None
    finally:
        probe.close()
    try:
        database = WorkerClient(path, timeout=5).status().get("database")
    except Exception:  # noqa: BLE001 - something listens but does not answer: still not ours
        database = "unknown: it does not answer"
    raise SocketTaken(f"another worker (database {printable(database)}) serves {printable(path)}: "
                      "give this one its own COLUMNIST_WORKER_PORT")


class ControlPage:
    """``status()`` is the worker's status; ``is_ready()`` says whether it can serve reads."""

    def __init__(self, status: Callable[[], Awaitable[dict]], is_ready: Callable[[], bool], settings: "Settings"):
        self.status, self.is_ready, self.settings = status, is_ready, settings
        self.path = settings.control_socket
        self.runner = None
        self.made: tuple[int, int] | None = None
        """(device, inode) of the socket this page made: the only one it removes."""
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-query")
        self.store: "Store | None" = None

    def claim(self) -> None:
        """Before the worker joins anything: its run folder is safe, its socket is free."""
        prepare_run_dir(self.path.parent)
        claim_socket(self.path)

    async def start(self) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
        app.router.add_get("/status", self._status)
        app.router.add_get("/summary", self._summary)
        app.router.add_post("/query", self._query)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        claim_socket(self.path)  # again: a worker may have started since the first look
        await web.UnixSite(self.runner, str(self.path)).start()
        os.chmod(self.path, 0o600)
        info = os.lstat(self.path)
        self.made = (info.st_dev, info.st_ino)
        log.info("control page on the Unix socket %s", self.path)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if self.made == (info.st_dev, info.st_ino):
            self.path.unlink(missing_ok=True)

    def _refuse(self, status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    async def _guard(self, request, handler):
        if request.method == "POST" and request.content_type != "application/json":
            return self._refuse(415, "POST a JSON body")
        return await handler(request)

    async def _status(self, request):
        from aiohttp import web

        return web.json_response(await self.status())

    async def _summary(self, request):
        from aiohttp import web

        if not self.is_ready():
            return self._refuse(503, "the worker is still starting")
        return web.json_response(await self._in_query_thread(lambda: self._store().summary()))

    async def _query(self, request):
        from aiohttp import web

        from columnist.store import QueryLimits
        from columnist.store.query_guard import QueryRefused
        from columnist.store.rows import plain

        if not self.is_ready():
            return self._refuse(503, "the worker is still starting")
        try:
            body = await request.json()
            sql, fmt = body["sql"], body.get("format")
            if not isinstance(sql, str) or not (fmt is None or isinstance(fmt, str)):
                raise TypeError
        except Exception:
            return self._refuse(400, 'expected a JSON object {"sql": "SELECT …"}')
        s = self.settings
        limits = QueryLimits(s.query_timeout, s.query_max_rows, s.query_max_bytes)
        try:
            answer = await self._in_query_thread(lambda: self._store().select(sql, limits, fmt))
        except QueryRefused as err:
            return self._refuse(403, f"refused: {err}")
        except Exception as err:  # the database's message is what the user needs (not its version)
            from columnist.store.clickhouse import engine_message

            return self._refuse(400, engine_message(err))
        if fmt:
            return web.Response(body=answer, content_type="application/octet-stream")
        columns, rows = answer
        return web.json_response({"columns": columns, "rows": [[plain(v) for v in row] for row in rows]})

    async def _in_query_thread(self, job):
        return await asyncio.get_running_loop().run_in_executor(self.executor, job)

    def _store(self) -> "Store":
        """Its own connection: a query never waits for ingest's."""
        if self.store is None:
            from columnist.store import connect

            self.store = connect(self.settings.db, self.settings.cluster, create=False)  # the worker made it
        return self.store
