"""The worker's control page (worker.control): who may ask, and what it answers (a real aiohttp server on
127.0.0.1 and the real engine)."""

from __future__ import annotations

import asyncio
import stat

import aiohttp

from columnist.streams.worker.control import ControlPage, token_path
from deploy.local import free_port
from columnist.streams.settings import Settings


def test_the_control_page_answers_only_its_owner_and_only_reads(store, session_dsn, tmp_path):
    port = free_port()
    settings = Settings(db=session_dsn, worker_port=port, run_dir=str(tmp_path / "run"), query_max_rows=1000)
    out = tmp_path / "bashrc"
    answers: dict[str, tuple[int, dict]] = {}

    async def scenario():
        async def status() -> dict:
            return {"ready": True}

        ready = asyncio.Event()
        ready.set()
        page = ControlPage(status, ready, settings)
        await page.start()
        token = token_path(settings).read_text()
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            async def ask(name, path, sql=None, headers=None, **kwargs):
                call = http.post(base + path, json={"sql": sql}, headers=headers, **kwargs) if sql is not None \
                    else http.get(base + path, headers=headers, **kwargs)
                async with call as response:
                    answers[name] = (response.status, await response.json())

            await ask("status", "/status", headers=auth)
            await ask("no secret", "/status")
            await ask("wrong secret", "/status", headers={"Authorization": "Bearer guess"})
            await ask("rebinding", "/status", headers={**auth, "Host": f"attacker.example:{port}"})
            await ask("web page", "/query", "SELECT 1", headers={**auth, "Origin": "http://attacker.example"})
            async with http.post(base + "/query", data="SELECT 1", headers={**auth, "Content-Type": "text/plain"}) as r:
                answers["text/plain"] = (r.status, await r.json())
            await ask("select", "/query", "SELECT count() AS n FROM columnist.images", headers=auth)
            await ask("summary", "/summary", headers=auth)
            await ask("outfile", "/query", f"SELECT 'echo pwned' INTO OUTFILE '{out}' APPEND", headers=auth)
            await ask("kill", "/query", "KILL QUERY WHERE 1", headers=auth)
            await ask("too many rows", "/query", "SELECT number FROM system.numbers LIMIT 5000", headers=auth)
            await ask("settings", "/query", "SELECT 1 SETTINGS readonly = 0", headers=auth)
        mode = stat.S_IMODE(token_path(settings).stat().st_mode)
        await page.stop()
        return mode

    mode = asyncio.run(scenario())
    assert mode == 0o600
    assert not token_path(settings).exists()
    assert answers["status"] == (200, {"ready": True})
    assert answers["select"] == (200, {"columns": ["n"], "rows": [[0]]})
    assert answers["summary"][1]["counts"] == {"columns": ["images", "embeddings", "scores"], "rows": [[0, 0, 0]]}
    assert {name: status for name, (status, _) in answers.items() if name not in ("status", "select", "summary")} == {
        "no secret": 401, "wrong secret": 401, "rebinding": 403, "web page": 403, "text/plain": 415,
        "outfile": 403, "kill": 403, "too many rows": 400, "settings": 400}
    assert "INTO OUTFILE" in answers["outfile"][1]["error"] and not out.exists()
    assert "Limit for result exceeded" in answers["too many rows"][1]["error"]
