"""The worker's control page: its status, and guarded read-only queries, for the CLI.

chdb lets one process open a database path, so while a worker owns an embedded database
the CLI reads through it. The page is HTTP on a Unix socket, ``<run_dir>/worker-<port>.sock``
(mode 0600 in a 0700 folder): only the user running the worker (and root) can connect, no
other local process, no web page in a browser, no DNS rebinding, and nobody else can hold
its connections open.

It serves ``GET /status`` (the worker), ``GET /summary`` (the store's counts) and
``POST /query`` with a JSON body (one SELECT, checked by store.query_guard, run with time,
row, byte, memory and thread limits on its own thread and its own connection, so a slow query
never stalls ingest). Nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

if TYPE_CHECKING:
    from columnist.store import Store
    from columnist.settings import Settings

log = logging.getLogger("columnist.worker")
MAX_BODY = 256 * 1024


def socket_path(settings: "Settings", port: int | None = None) -> Path:
    return settings.run_path / f"worker-{port or settings.worker_port}.sock"


class ControlPage:
    """``status()`` is the worker's status; ``ready`` is set once the worker can serve reads."""

    def __init__(self, status: Callable[[], Awaitable[dict]], ready: asyncio.Event, settings: "Settings"):
        self.status, self.ready, self.settings = status, ready, settings
        self.path = socket_path(settings)
        self.runner = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnist-query")
        self.store: "Store | None" = None

    async def start(self) -> None:
        from aiohttp import web

        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        self.path.unlink(missing_ok=True)  # left by a worker that was killed
        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
        app.router.add_get("/status", self._status)
        app.router.add_get("/summary", self._summary)
        app.router.add_post("/query", self._query)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.path)).start()
        os.chmod(self.path, 0o600)
        log.info("control page on the Unix socket %s", self.path)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
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

        if not self.ready.is_set():
            return self._refuse(503, "the worker is still starting")
        return web.json_response(await self._in_query_thread(lambda: self._store().summary()))

    async def _query(self, request):
        from aiohttp import web

        from columnist.store import QueryLimits
        from columnist.store.query_guard import QueryRefused
        from columnist.store.rows import plain

        if not self.ready.is_set():
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
        except Exception as err:  # the database's message is what the user needs
            return self._refuse(400, str(err).strip()[:2000])
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
