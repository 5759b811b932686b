"""The worker's control page (worker.control): who may reach it, and what it answers (a real
aiohttp server on a Unix socket and the real engine)."""

from __future__ import annotations

import asyncio
import stat

import aiohttp

from columnist.settings import Settings
from columnist.worker.control import ControlPage


def test_the_control_page_is_the_users_alone_and_only_reads(store, session_dsn, tmp_path):
    settings = Settings(db=session_dsn, worker_port=7, run_dir=str(tmp_path / "run"), query_max_rows=1000)
    out = tmp_path / "bashrc"
    answers: dict[str, tuple[int, dict]] = {}

    async def scenario():
        async def status() -> dict:
            return {"ready": True}

        page = ControlPage(status, lambda: True, settings)
        page.claim()
        await page.start()
        modes = (stat.S_IMODE(settings.control_socket.stat().st_mode), stat.S_IMODE(settings.run_path.stat().st_mode))
        connector = aiohttp.UnixConnector(path=str(settings.control_socket))
        async with aiohttp.ClientSession(connector=connector) as http:
            async def ask(name, path, sql=None, **kwargs):
                call = http.post("http://worker" + path, json={"sql": sql}, **kwargs) if sql is not None \
                    else http.get("http://worker" + path, **kwargs)
                async with call as response:
                    answers[name] = (response.status, await response.json())

            await ask("status", "/status")
            await ask("summary", "/summary")
            await ask("select", "/query", "SELECT count() AS n FROM columnist.images")
            async with http.post("http://worker/query", json={"sql": "SELECT 1 AS a", "format": "CSVWithNames"}) as r:
                answers["csv"] = (r.status, await r.read())
            async with http.post("http://worker/query", data="SELECT 1", headers={"Content-Type": "text/plain"}) as r:
                answers["text/plain"] = (r.status, await r.json())
            await ask("outfile", "/query", f"SELECT 'echo pwned' INTO OUTFILE '{out}' APPEND")
            await ask("apply file", "/query", "SELECT * APPLY file FROM (SELECT '/etc/hostname' AS p)")
            await ask("kill", "/query", "KILL QUERY WHERE 1")
            await ask("too many rows", "/query", "SELECT arrayJoin(range(5000)) AS n")
            await ask("settings", "/query", "SELECT 1 SETTINGS readonly = 0")
            await ask("not SQL", "/query", "SELECT FROM WHERE")
        await page.stop()
        return modes

    socket_mode, folder_mode = asyncio.run(scenario())
    assert (socket_mode, folder_mode) == (0o600, 0o700)
    assert not settings.control_socket.exists()
    assert answers["status"] == (200, {"ready": True})
    assert answers["select"] == (200, {"columns": ["n"], "rows": [[0]]})
    assert answers.pop("csv") == (200, b'"a"\n1\n')
    assert answers["summary"][1]["counts"] == {"columns": ["images", "embeddings", "scores"], "rows": [[0, 0, 0]]}
    assert {name: status for name, (status, _) in answers.items() if name not in ("status", "select", "summary")} == {
        "text/plain": 415, "outfile": 403, "apply file": 403, "kill": 403, "too many rows": 400, "settings": 403,
        "not SQL": 403}
    assert "INTO OUTFILE" in answers["outfile"][1]["error"] and not out.exists()
    assert "Limit for result exceeded" in answers["too many rows"][1]["error"]


def test_one_worker_per_socket_and_each_removes_only_its_own(tmp_path):
    """A second worker with the same port name unlinked the first one's socket and answered
    for its store; whichever stopped removed the socket the other still served."""
    import os
    import socket as sockets

    import pytest

    from columnist.worker.control import SocketTaken, UnsafeRunDir

    settings = Settings(worker_port=9, run_dir=str(tmp_path / "run"))

    async def scenario():
        async def status() -> dict:
            return {"ready": True, "database": "chdb:///first"}

        first = ControlPage(status, lambda: True, settings)
        first.claim()
        await first.start()
        second = ControlPage(status, lambda: True, settings)
        loop = asyncio.get_running_loop()
        with pytest.raises(SocketTaken, match="another worker \\(database chdb:///first\\) serves"):
            await loop.run_in_executor(None, second.claim)
        # someone replaces the first worker's socket: stopping, it leaves the new one alone
        os.unlink(settings.control_socket)
        other = sockets.socket(sockets.AF_UNIX)
        other.bind(str(settings.control_socket))
        await first.stop()
        assert settings.control_socket.exists()
        other.close()
        # a socket nobody answers on (a killed worker's) is cleared by the next
        second.claim()
        assert not settings.control_socket.exists()

    asyncio.run(scenario())

    linked = tmp_path / "linked-run"
    linked.symlink_to(tmp_path / "run")
    with pytest.raises(UnsafeRunDir, match="not a folder"):
        ControlPage(None, lambda: True, Settings(worker_port=9, run_dir=str(linked))).claim()
    foreign = tmp_path / "foreign-run"
    foreign.mkdir()
    os.chown(foreign, 12345, 12345)
    with pytest.raises(UnsafeRunDir, match="belongs to another user"):
        ControlPage(None, lambda: True, Settings(worker_port=9, run_dir=str(foreign))).claim()


def test_a_socket_something_listens_on_is_never_taken_over(tmp_path):
    """A stopped (SIGSTOP) or slow worker does not answer within seconds: a second worker once
    took its socket. Anything that accepts the connection keeps its socket."""
    import socket as sockets
    import threading

    import pytest

    from columnist.worker.control import SocketTaken, claim_socket

    settings = Settings(worker_port=11, run_dir=str(tmp_path / "run"))
    settings.run_path.mkdir(mode=0o700)
    silent = sockets.socket(sockets.AF_UNIX)
    silent.bind(str(settings.control_socket))
    silent.listen()
    accepted = threading.Thread(target=lambda: silent.accept()[0].close(), daemon=True)
    accepted.start()
    inode = settings.control_socket.stat().st_ino
    with pytest.raises(SocketTaken, match="database unknown: it does not answer"):
        claim_socket(settings.control_socket)
    assert settings.control_socket.stat().st_ino == inode
    silent.close()
