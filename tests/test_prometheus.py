"""A real Prometheus (Debian's `prometheus` package) scraping a running recorder with the project's alerting rules.

The structural checks in test_deploy_files.py compare names; this one asks Prometheus itself whether every query
of the Grafana dashboard and every alert expression finds series in what a recorder and a callback receiver
really expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from highlight.broker import free_port
from highlight.simulator import LiveSimulator
from tests.harness import (
    ROOT,
    Names,
    by_event,
    create_topics,
    moment,
    produce,
    receiver_settings_for,
    receiving,
    results,
    running,
    settings_for,
    tool,
    wait_ready,
)

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "highlight.json"
SCRAPE_JOB = "highlight"  # the job the dashboard and the alerts select
CALLBACKS_JOB = "highlight-callbacks"  # the callback receivers' job
# Grafana's variables, each with a value Prometheus accepts. A second-long scrape interval makes a minute of
# rate window hold plenty of samples.
GRAFANA_VARIABLES = {"$instance": ".*", "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
# A comparison with a number: what turns a signal into an alert condition.
THRESHOLD = re.compile(r"(==|!=|>=|<=|>|<)(?=\s*[-+]?\.?\d)")


def dashboard_queries() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]
    queries = {}
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"panel {panel['title']!r}: a variable this test does not know: {expr}"
            queries[f"panel {panel['title']!r} {target['refId']}"] = expr
    return queries


def alert_rules() -> dict[str, str]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def without_thresholds(expr: str) -> str:
    """The alert's data rather than its verdict: a healthy recorder fires nothing, so the condition as written
    would return no series whether its metrics exist or not.

    `x > 3` becomes `x > bool 3` (a 0 or 1 for every series of x) and `absent(x)` becomes `x`, so the result
    has series exactly when the expression's selectors, functions and label matching find data.
    """
    while (start := expr.find("absent(")) >= 0:
        depth, end = 0, start + len("absent")
        for end in range(start + len("absent"), len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            if depth == 0:
                break
        expr = expr[:start] + expr[start + len("absent") : end + 1] + expr[end + 1 :]
    return THRESHOLD.sub(r"\1 bool", expr)


def test_without_thresholds_keeps_the_data_and_drops_the_verdict() -> None:
    assert without_thresholds('absent(up{job="x"} == 1)') == '(up{job="x"} == bool 1)'
    assert without_thresholds('a{o!="b"} / b > 0.1 and c >= 5') == 'a{o!="b"} / b > bool 0.1 and c >= bool 5'
    assert without_thresholds('d{o!~"x|y"}[5m] > 0') == 'd{o!~"x|y"}[5m] > bool 0'


def prometheus_config(metrics_port: int, receiver_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the recorder and the callback receiver found at fixed addresses
    instead of by compose DNS, the repository's alerts.yml, and everything on a one-second clock."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    jobs = []
    for name, port, service in ((SCRAPE_JOB, metrics_port, "recorder"), (CALLBACKS_JOB, receiver_port, "callbacks")):
        (job,) = [job for job in config["scrape_configs"] if job["job_name"] == name]
        del job["dns_sd_configs"]
        job.pop("relabel_configs", None)  # they name the compose service from DNS; say it directly
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": service}}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


class Prometheus:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def series(self, expr: str) -> list[dict[str, Any]]:
        """What `expr` returns at any moment from a minute ago to three minutes ahead, every two seconds.

        Ahead, because a subquery (`deriv(x[10m:1m])`) is evaluated on minute boundaries and needs two of them
        with data; the last scrape stays visible for Prometheus's five-minute lookback, so a range that
        reaches two minutes past it holds two boundaries without waiting for them.
        """
        now = await self.api("query", query="time()")
        at = float(now["result"][0])
        data = await self.api("query_range", query=expr, start=str(at - 60), end=str(at + 180), step="2")
        found: list[dict[str, Any]] = data["result"]
        return found

    async def empty(self, queries: dict[str, str], *, timeout: float = 30.0) -> list[str]:
        """The queries that still return no series once `timeout` has passed (checked until none is left)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = list(queries)
        while waiting:
            waiting = [where for where in waiting if not await self.series(queries[where])]
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.25)
        return waiting

    async def until(self, expr: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (found := await self.series(expr)):
            assert loop.time() < deadline, f"Prometheus found no series for {expr} within {timeout:g} s"
            await asyncio.sleep(0.25)
        return found


@asynccontextmanager
async def prometheus(metrics_port: int, receiver_port: int, folder: Path) -> AsyncIterator[Prometheus]:
    """A Prometheus process on a free port with its storage in `folder`; stopped and waited for on exit."""
    binary = tool("prometheus", "apt-get install prometheus")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(metrics_port, receiver_port)), encoding="utf-8")
    port = free_port()
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                assert process.returncode is None, f"prometheus exited: {log_path.read_text(errors='replace')}"
                try:
                    async with http.get(f"{url}/-/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert loop.time() < deadline, f"prometheus not ready: {log_path.read_text(errors='replace')}"
                await asyncio.sleep(0.1)
            yield Prometheus(http, url)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited on its own
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_prometheus_finds_series_for_every_dashboard_query_and_alert_expression(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    first = moment("prom-1", "prom-a")
    # Everything a panel shows, at least once: a started call, a duplicate, a retried call, a moment re-keyed to
    # its home partition (no key), a dead letter.
    simulator.inject("busy", channel="prom-retried")
    await produce(bootstrap, names.moments, [first, first | {"event_id": "prom-dup"}, moment("prom-2", "prom-retried")])
    await produce(bootstrap, names.moments, [moment("prom-3", "prom-unkeyed"), b"not json"], key=None)
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port)
    receiver_port = free_port()
    async with (
        running(settings),
        receiving(receiver_settings_for(bootstrap, names, metrics_port=receiver_port)),
        prometheus(ops_port, receiver_port, tmp_path) as server,
    ):
        await wait_ready(ops_port, 200)
        await wait_ready(receiver_port, 200)
        answered = by_event(await results(bootstrap, names.results, 4))
        assert {event: document["status"] for event, document in answered.items()} == {
            "prom-1": "started",
            "prom-dup": "duplicate",
            "prom-2": "started",
            "prom-3": "started",
        }

        # A counter's first sample is no increase: a second dead letter, once the first is scraped, fires the
        # rule, so Prometheus really evaluates the rules against what the recorder exposes.
        await server.until('highlight_dead_letters_total{reason="invalid_json"}')
        await produce(bootstrap, names.moments, [b"still not json"], key=None)
        firing = await server.until('ALERTS{alertname="HighlightDeadLetters", alertstate="firing"}')
        assert {alert["metric"]["reason"] for alert in firing} == {"invalid_json"}

        queries = dashboard_queries() | {
            f"alert {name}": without_thresholds(expr) for name, expr in alert_rules().items()
        }
        empty = await server.empty(queries)
        assert not empty, "no series, 30 s after the recorder answered:\n" + "\n".join(
            f"{where}: {queries[where]}" for where in empty
        )

        instances = await server.api("label/instance/values", **{"match[]": f'up{{job="{SCRAPE_JOB}"}}'})
        assert instances == [f"127.0.0.1:{ops_port}"], "the dashboard's $instance variable lists no recorder"
        groups = (await server.api("rules"))["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(rules) == set(alert_rules()), "Prometheus did not load every rule of alerts.yml"
        unhealthy = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
        assert not unhealthy, f"rules Prometheus could not evaluate: {unhealthy}"
