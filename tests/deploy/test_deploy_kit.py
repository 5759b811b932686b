"""The deploy kit, checked as far as this machine allows (no Docker engine, no compose
plugin): the compose file's structure, and the dashboard's queries run on the real engine."""

from __future__ import annotations

import json
import re

import yaml

from columnist.models.mock import MockEncoder
from columnist.tagger import find_images, tag
from tests.conftest import PHOTOS, REPO

DEPLOY = REPO / "deploy"


def test_the_compose_file_wires_kafka_clickhouse_two_workers_and_grafana():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "clickhouse", "topics", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    for name in ("worker-1", "worker-2"):
        environment = services[name]["environment"]
        assert environment["COLUMNIST_DB"].startswith("http://") and environment["COLUMNIST_KAFKA"] == "kafka:9092"
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]  # published on loopback only
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source
    scraped = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"][0]
    assert scraped["targets"] == ["worker-1:9464", "worker-2:9464"]
    assert "CMD [\"columnist\", \"worker\"]" in (DEPLOY / "Dockerfile").read_text()


def grafana_to_clickhouse(sql: str) -> str:
    """The dashboard's SQL as Grafana sends it: its macros and variables filled in."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 DAY", sql)
    return sql.replace("${vocabulary}", "space").replace("${attribute}", "moon")


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "columnist.json").read_text())


def test_every_dashboard_query_runs_on_the_engine(store, space_vocab):
    tag(find_images([PHOTOS]), space_vocab, MockEncoder(), store)
    board = dashboard()
    queries = [target["rawSql"] for panel in board["panels"] for target in panel["targets"] if "rawSql" in target]
    queries += [variable["query"] for variable in board["templating"]["list"]]
    assert len(queries) == 6
    photos = len(list(PHOTOS.glob("*.jpg")))
    answers = [store.query(grafana_to_clickhouse(sql)) for sql in queries]
    images_per_minute, heatmap, accepted, newest, vocabularies, attributes = (rows for _, rows in answers)
    assert sum(n for _, n in images_per_minute) == photos
    columns, _ = answers[1]
    assert columns == ["time", *(f"{i / 10:.1f}" for i in range(10))]  # a time column, then one per tenth
    assert sum(sum(row[1:]) for row in heatmap) == photos  # every photo's moon score in one bucket
    assert {attribute for attribute, *_ in accepted} == set(space_vocab.codes)
    assert len(newest) == photos and all(len(top.split(", ")) == 3 for _, _, top in newest)
    assert vocabularies == [("space",)] and ("moon",) in attributes


def test_every_prometheus_panel_reads_a_metric_the_worker_serves():
    from columnist.worker.metrics import Timings, render

    served = render({"ready": True, "lag": 3}, Timings())
    names = set(re.findall(r"^# TYPE (\w+) (\w+)", served, re.M))
    exprs = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"] if "expr" in target]
    assert any("columnist_consumer_lag" in e for e in exprs) and any("columnist_batch_seconds_bucket" in e for e in exprs)
    for expr in exprs:
        for metric in re.findall(r"columnist_\w+", expr):
            family = re.sub(r"_(total|bucket|count|sum)$", "", metric)
            assert any(name in (metric, family) for name, _ in names), (metric, sorted(names))
