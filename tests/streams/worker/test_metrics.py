"""The worker's metrics page: Prometheus text from the worker's status, and health."""

from __future__ import annotations

import asyncio

import aiohttp

from columnist.worker.metrics import MetricsPage, render
from deploy.local import free_port


def test_metrics_render_the_counters_in_the_prometheus_text_format():
    text = render({"ready": True, "counters": {"dead_letters": 3, "images_encoded": 40, "encode_s": 1.5},
                   "vocabularies": [{"name": "space", "version": 2}], "lag": 12})
    lines = text.splitlines()
    assert "columnist_ready 1" in lines and "columnist_dead_letters_total 3" in lines
    assert "columnist_images_encoded_total 40" in lines and 'columnist_vocabulary_version{vocabulary="space"} 2' in lines
    assert 'columnist_stage_seconds_total{stage="encode"} 1.500000' in lines and "columnist_consumer_lag 12" in lines
    assert all(line.startswith("#") or " " in line for line in lines)


def test_health_answers_503_until_ready_and_metrics_on_loopback():
    port, state = free_port(), {"ready": False}

    async def status() -> dict:
        return {"ready": state["ready"], "counters": {}, "vocabularies": []}

    async def scenario():
        page = MetricsPage(status, "127.0.0.1", port)
        await page.start()
        answers = []
        async with aiohttp.ClientSession() as http:
            for ready in (False, True):
                state["ready"] = ready
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    answers.append(response.status)
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                answers.append((await response.text()).splitlines()[2])
        await page.stop()
        return answers

    assert asyncio.run(scenario()) == [503, 200, "columnist_ready 1"]
