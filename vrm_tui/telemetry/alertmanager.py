"""Alertmanager's v2 API: the alerts it holds (firing, silenced, inhibited), its silences,
and the rollout events vrm posts to it so they take the same routes as alerts.

Every call raises AlertmanagerUnavailable with the reason when Alertmanager does not answer,
so callers (the guard, the TUI) can fall back or say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from vrm_tui.core.errors import AlertmanagerUnavailable, BadInput, shown
from vrm_tui.telemetry.http import shared_client
from vrm_tui.telemetry.prometheus import Alert

__all__ = ["AlertmanagerUnavailable", "HeldAlert", "Silence", "alerts", "as_alert",
           "create_silence", "expire_silence", "parse_matcher", "post_alerts", "silences",
           "uptime_s"]


@dataclass(frozen=True)
class HeldAlert:
    """One alert as Alertmanager holds it: `state` is active, suppressed (silenced or
    inhibited) or unprocessed."""

    fingerprint: str
    name: str
    severity: str
    state: str
    summary: str
    starts_at: str
    labels: dict[str, str]
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()

    @property
    def firing(self) -> bool:
        """Firing and not suppressed: what reaches people (and the guard)."""
        return self.state == "active"

    def about(self) -> str:
        """The labels that say what it concerns, e.g. `backend=rust`."""
        shown_labels = [f"{k}={v}" for k, v in sorted(self.labels.items())
                        if k in ("backend", "service", "instance", "job", "host")]
        return ", ".join(shown_labels)


@dataclass(frozen=True)
class Silence:
    id: str
    state: str  # active | pending | expired
    matchers: str  # as `vrm silence` takes them: alertname=X backend=~rust
    starts_at: str
    ends_at: str
    created_by: str
    comment: str


def _call(base_url: str, method: str, path: str, timeout: float,
          body: Any = None) -> Any:
    try:
        response = shared_client().request(method, f"{base_url}/api/v2{path}", json=body,
                                           timeout=timeout)
    except httpx.HTTPError as exc:
        raise AlertmanagerUnavailable(f"Alertmanager not running at {base_url} ({exc})") \
            from None
    if response.status_code >= 400:
        raise AlertmanagerUnavailable(f"Alertmanager at {base_url} refused {method} {path}: "
                                      f"{response.status_code} {response.text.strip()[:200]}")
    try:
        return response.json() if response.content else None
    except ValueError:
        raise AlertmanagerUnavailable(f"Alertmanager at {base_url} answered {method} {path} "
                                      "with something that is not JSON") from None


def alerts(base_url: str, timeout: float = 1.0) -> list[HeldAlert]:
    """Every alert Alertmanager holds now (silenced and inhibited ones too), firing first."""
    found = []
    for item in _call(base_url, "GET", "/alerts", timeout) or []:
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        status = item.get("status") or {}
        found.append(HeldAlert(
            str(item.get("fingerprint", "")), labels.get("alertname", "?"),
            labels.get("severity", ""), str(status.get("state", "?")),
            str((item.get("annotations") or {}).get("summary", "")),
            str(item.get("startsAt", "")), labels,
            tuple(status.get("silencedBy") or ()), tuple(status.get("inhibitedBy") or ())))
    return sorted(found, key=lambda a: (not a.firing, a.severity != "critical", a.name))


def as_alert(held: HeldAlert) -> Alert:
    """An Alertmanager alert as the Alerts pane shows alerts: firing (received, or not yet
    checked against silences: unprocessed), or silenced/inhibited."""
    state = "firing" if held.state in ("active", "unprocessed") else (
        "silenced" if held.silenced_by else "inhibited" if held.inhibited_by else held.state)
    return Alert(held.name, state, held.severity, held.summary, held.starts_at, held.labels)


def uptime_s(base_url: str, timeout: float = 1.0) -> float:
    """Seconds since Alertmanager started (its status's `uptime`)."""
    started = str((_call(base_url, "GET", "/status", timeout) or {}).get("uptime", ""))
    text = re.sub(r"(\.\d{6})\d+", r"\1", started.replace("Z", "+00:00"))
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(text)).total_seconds()
    except ValueError:
        raise AlertmanagerUnavailable(f"Alertmanager at {base_url}: no start time in its "
                                      f"status ({shown(started)})") from None


def post_alerts(base_url: str, posted: list[dict[str, Any]], timeout: float = 1.0) -> None:
    """Hand alerts (vrm's rollout events) to Alertmanager: they take its routes."""
    _call(base_url, "POST", "/alerts", timeout, posted)


# --- silences --------------------------------------------------------------------------------

_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)(.*)")


def parse_matcher(text: str) -> dict[str, Any]:
    """`name=value`, `name!=value`, `name=~regex` or `name!~regex` as the API's matcher."""
    match = _MATCHER.fullmatch(text.strip())
    if match is None or not match.group(3):
        raise BadInput(f"matcher {shown(text)}: expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX "
                       "or NAME!~REGEX, e.g. alertname=HighErrorRate")
    name, op, value = match.groups()
    if "~" in op:
        try:
            re.compile(value)
        except re.error as exc:
            raise BadInput(f"matcher {shown(text)}: not a regular expression ({exc})") \
                from None
    return {"name": name, "value": value.strip("\"'"), "isRegex": "~" in op,
            "isEqual": not op.startswith("!")}


_OPS = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}


def _matchers_text(matchers: list[dict[str, Any]]) -> str:
    return " ".join(f"{m['name']}{_OPS[bool(m.get('isEqual', True)), bool(m.get('isRegex'))]}"
                    f"{m['value']}" for m in matchers)


def silences(base_url: str, timeout: float = 2.0) -> list[Silence]:
    """Every silence Alertmanager knows, active first, then pending, then expired."""
    found = [Silence(str(s["id"]), str((s.get("status") or {}).get("state", "?")),
                     _matchers_text(s.get("matchers") or []), str(s.get("startsAt", "")),
                     str(s.get("endsAt", "")), str(s.get("createdBy", "")),
                     str(s.get("comment", "")))
             for s in _call(base_url, "GET", "/silences", timeout) or []]
    order = {"active": 0, "pending": 1, "expired": 2}
    return sorted(found, key=lambda s: (order.get(s.state, 3), s.ends_at))


def create_silence(base_url: str, matchers: list[dict[str, Any]], duration: timedelta,
                   created_by: str, comment: str, timeout: float = 2.0) -> str:
    """A silence from now for `duration`; its id."""
    now = datetime.now(UTC)
    body = {"matchers": matchers, "startsAt": now.isoformat(),
            "endsAt": (now + duration).isoformat(), "createdBy": created_by,
            "comment": comment}
    answer = _call(base_url, "POST", "/silences", timeout, body) or {}
    return str(answer.get("silenceID", ""))


def expire_silence(base_url: str, silence_id: str, timeout: float = 2.0) -> None:
    if not re.fullmatch(r"[0-9a-fA-F-]{8,64}", silence_id):
        raise BadInput(f"silence id {shown(silence_id)}: expected an id as `vrm silence list` "
                       "shows it")
    try:
        _call(base_url, "DELETE", f"/silence/{silence_id}", timeout)
    except AlertmanagerUnavailable as exc:
        if " 404 " in str(exc):
            raise BadInput(f"silence id {shown(silence_id)}: Alertmanager has no such "
                           "silence (`vrm silence list`)") from None
        raise
