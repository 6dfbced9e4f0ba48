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
from vrm_tui.core.errors import Failure
from vrm_tui.telemetry.http import shared_client

BACKENDS = tuple(Backend)


class PrometheusUnavailable(Failure):
    """Prometheus did not answer; the message says where it was looked for and why."""


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


def history(base_url: str, minutes: int = 15, points: int = 30,
            timeout: float = 5.0) -> dict[str, dict[str, list[float]]]:
    """Per backend p50 and p95 (ms) and request rate over the last `minutes`, `points` steps."""
    client = PrometheusConnect(url=base_url, disable_ssl=True, timeout=timeout)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes)
    step = max(1, minutes * 60 // points)
    window = f"{max(step * 2, 30)}s"
    queries = {
        "p50": f"1000 * histogram_quantile(0.5, sum by (backend, le) "
               f"(rate(vision_manager_task_duration_seconds_bucket[{window}])))",
        "p95": f"1000 * histogram_quantile(0.95, sum by (backend, le) "
               f"(rate(vision_manager_task_duration_seconds_bucket[{window}])))",
        "rate": f"sum by (backend) (rate(vision_manager_tasks_total[{window}]))",
    }
    found: dict[str, dict[str, list[float]]] = {b: {} for b in BACKENDS}
    for name, query in queries.items():
        try:
            series = client.custom_query_range(query, start, end, f"{step}s")
        except (PrometheusApiClientException, RequestException, ValueError) as exc:
            raise PrometheusUnavailable(f"Prometheus not running at {base_url} ({exc})") \
                from None
        for item in series:
            backend = item["metric"].get("backend")
            if backend in found:
                values = [float(v) for _, v in item["values"]]
                found[backend][name] = [0.0 if v != v else v for v in values][-points:]
    return found
