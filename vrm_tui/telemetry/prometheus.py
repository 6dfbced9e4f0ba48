"""Prometheus as a data source: firing and pending alerts, and history for the sparklines.

A TUI restarted mid-migration back-fills the last 15 minutes from range queries, so its
sparklines are not blank. When Prometheus is not running, every call raises
PrometheusUnavailable with the reason, and the panes say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests.exceptions import RequestException

from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import PrometheusUnavailable
from vrm_tui.telemetry.http import shared_client

BACKENDS = tuple(Backend)


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing | pending
    severity: str
    summary: str
    since: str
    labels: dict[str, str]


def alerts(base_url: str, timeout: float = 1.0) -> list[Alert]:
    """Firing and pending alerts, firing first."""
    try:
        response = shared_client().get(f"{base_url}/api/v1/alerts", timeout=timeout)
        response.raise_for_status()
        data = response.json()["data"]["alerts"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise PrometheusUnavailable(f"Prometheus not running at {base_url} ({exc})") from None
    found = [Alert(a["labels"].get("alertname", "?"), a.get("state", "?"),
                   a["labels"].get("severity", ""), a.get("annotations", {}).get("summary", ""),
                   a.get("activeAt", ""), a["labels"]) for a in data]
    return sorted(found, key=lambda a: (a.state != "firing", a.severity != "critical", a.name))


Series = dict[str, dict[str, list[float | None]]]
"""backend -> p50 | p95 | rate -> one value per step, None where Prometheus has none."""


def history(base_url: str, minutes: int = 15, points: int = 30,
            timeout: float = 5.0, host: str = "") -> Series:
    """Per backend p50 and p95 (ms) and request rate over the last `minutes`, `points` steps;
    `host`: a fleet's Prometheus scrapes every host, and this host's series say `host`.

    A step Prometheus has no value for (no sample, or NaN: no request finished) is None, a
    gap, never 0.0, which drew an outage of 100% errors as the fastest minute."""
    client = PrometheusConnect(url=base_url, disable_ssl=True, timeout=timeout)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes)
    step = max(1, minutes * 60 // points)
    window = f"{max(step * 2, 30)}s"
    only = f'{{host="{host}"}}' if host else ""
    queries = {
        "p50": f"1000 * histogram_quantile(0.5, sum by (backend, le) "
               f"(rate(vision_manager_task_duration_seconds_bucket{only}[{window}])))",
        "p95": f"1000 * histogram_quantile(0.95, sum by (backend, le) "
               f"(rate(vision_manager_task_duration_seconds_bucket{only}[{window}])))",
        "rate": f"sum by (backend) (rate(vision_manager_tasks_total{only}[{window}]))",
    }
    found: Series = {b: {} for b in BACKENDS}
    for name, query in queries.items():
        try:
            series = client.custom_query_range(query, start, end, f"{step}s")
        except (PrometheusApiClientException, RequestException, ValueError) as exc:
            raise PrometheusUnavailable(f"Prometheus not running at {base_url} ({exc})") \
                from None
        for item in series:
            backend = item["metric"].get("backend")
            if backend in found:
                found[backend][name] = on_grid(item["values"], start.timestamp(),
                                               end.timestamp(), step)[-points:]
    return found


def on_grid(values: list[list[object]], start: float, end: float,
            step: int) -> list[float | None]:
    """A range query's [[time, "value"], ...] as one slot per step from `start` to `end`:
    None where a step has no value or a NaN (a series that stopped ends in gaps)."""
    at: dict[int, float] = {}
    for stamp, raw in values:
        value = float(str(raw))
        if value == value:  # NaN: no request finished in the window
            at[round((float(str(stamp)) - start) / step)] = value
    return [at.get(i) for i in range(int((end - start) // step) + 1)]
