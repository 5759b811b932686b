"""The worker's metrics page: Prometheus text (prometheus_client) from the worker's status,
latency histograms and process metrics; health that says when Kafka went silent."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from columnist.worker.metrics import KafkaWatch, MetricsPage, Timings, render
from deploy.local import free_port


def samples(text: str) -> dict[str, float]:
    return {(s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_are_the_prometheus_text_format_with_histograms():
    timings = Timings()
    timings.batch.observe(0.3)
    timings.stage.labels("encode").observe(1.5)
    found = samples(render({"ready": True, "counters": {"dead_letters": 3, "images_encoded": 40},
                            "vocabularies": [{"name": "space", "version": 2}], "lag": 12}, timings))
    assert found["columnist_ready"] == 1 and found["columnist_dead_letters_total"] == 3
    assert found["columnist_images_encoded_total"] == 40 and found["columnist_consumer_lag"] == 12
    assert found["columnist_vocabulary_version|vocabulary=space"] == 2
    assert found["columnist_batch_seconds_count"] == 1 and found["columnist_batch_seconds_bucket|le=0.5"] == 1
    assert found["columnist_stage_seconds_sum|stage=encode"] == 1.5


def test_health_is_503_until_ready_and_when_kafka_is_silent():
    port, state = free_port(), {"ready": False}
    watch = KafkaWatch(unhealthy_after=30)

    async def status() -> dict:
        return {"ready": state["ready"], "counters": {}, "vocabularies": []}

    async def scenario():
        page = MetricsPage(status, "127.0.0.1", port, watch=watch)
        await page.start()
        answers = []
        async with aiohttp.ClientSession() as http:
            for ready, silent in ((False, 0), (True, 0), (True, 31)):
                state["ready"] = ready
                watch.last_answer -= silent
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    answers.append((response.status, (await response.json()).get("reason", "")))
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
        await page.stop()
        return answers, samples(text)

    answers, found = asyncio.run(scenario())
    assert [status for status, _ in answers] == [503, 200, 503]
    assert answers[2][1].startswith("Kafka has not answered for 3")
    assert found["columnist_ready"] == 1 and found["process_resident_memory_bytes"] > 0
