"""vrm hears alerts: the guard's alert gate, the refusal to start a migration while a critical
alert fires, the journal of alerts firing and resolved, and rollout events as notifications.

vrm reads Alertmanager's v2 API rather than running a webhook receiver: nothing listens on a
port, a vrm that was not running catches up on what still fires when it next polls, and the
guard needs the current state anyway to judge a step. Every vrm that polls (the guard while
it bakes, the TUI's Alerts pane) hears; `alerts-heard.json` in the state dir, under a lock,
makes each firing and each resolution one journal line whichever of them heard it first.
Alertmanager applies silences and inhibitions before vrm sees an alert, so a silence set for a
migration window (`vrm silence`) also keeps that alert from failing a step. When Alertmanager
does not answer, Prometheus's firing alerts stand in for the gate and the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vrm_tui.core import services
from vrm_tui.core.errors import (
    AlertmanagerUnavailable,
    BadInput,
    Failure,
    PrometheusUnavailable,
    shown,
)
from vrm_tui.core.paths import StateDir
from vrm_tui.journal import Journal, Record
from vrm_tui.migrate.gates import Gate
from vrm_tui.settings import Settings
from vrm_tui.stack import monitoring
from vrm_tui.telemetry import alertmanager, prometheus
from vrm_tui.telemetry.alertmanager import HeldAlert

__all__ = ["GATE_NAME", "Listener", "about_rust_or_proxy", "critical", "describe", "expire",
           "gate", "hear", "held", "notify", "pane", "parse_span", "refuse_start", "silence",
           "silences"]

GATE_NAME = "critical alerts"
POLL_S = 1.0  # the guard asks Alertmanager this often while a step bakes
VRM = "vrm"  # the `source` label of vrm's own rollout events: never heard back as alerts
EVENT_TTL = timedelta(minutes=5)  # how long a rollout event stays in Alertmanager
EVENTS = {"started": "info", "promoted": "info", "step passed": "info", "paused": "warning",
          "resumed": "info", "done": "info", "rolled-back": "warning", "aborted": "warning"}
"""The rollout events sent to the alert routes, like Flagger's, and their severity."""


def held(settings: Settings, timeout: float = 0.5) -> tuple[list[HeldAlert], str] | None:
    """This host's alerts now and where they came from: Alertmanager, else Prometheus's
    firing ones; None when monitoring is off or neither answers. A fleet's Prometheus alerts
    on every host: another host's alert (its `host` label) is not this host's."""
    found = _held(settings, timeout)
    if found is None or not settings.fleet:
        return found
    alerts, where = found
    return [a for a in alerts
            if a.labels.get("host", settings.fleet_host) == settings.fleet_host], where


def _held(settings: Settings, timeout: float) -> tuple[list[HeldAlert], str] | None:
    if not settings.monitoring:
        return None
    try:
        return alertmanager.alerts(monitoring.alertmanager_url(settings), timeout), \
            "alertmanager"
    except AlertmanagerUnavailable:
        pass
    try:
        found = prometheus.alerts(f"http://127.0.0.1:{settings.prometheus_port}", timeout)
    except PrometheusUnavailable:
        return None
    return [HeldAlert(f"{a.name}:{sorted(a.labels.items())}", a.name, a.severity, "active",
                      a.summary, a.since, a.labels) for a in found if a.state == "firing"], \
        "prometheus"


def about_rust_or_proxy(alert: HeldAlert) -> bool:
    """Whether an alert concerns rust or the proxy (by the rules' backend/service/job
    labels), the two a migration changes."""
    labels = alert.labels
    return (labels.get("backend") == "rust"
            or labels.get("service") in (services.RUST, services.PROXY)
            or labels.get("job") == "nginx" or alert.name == "ProxyDown")


def critical(alerts: list[HeldAlert], about_migration: bool = False) -> list[HeldAlert]:
    """Firing (not silenced, not inhibited) critical alerts, vrm's own events aside."""
    return [a for a in alerts if a.firing and a.severity == "critical"
            and a.labels.get("source") != VRM
            and (not about_migration or about_rust_or_proxy(a))]


def describe(alert: HeldAlert) -> str:
    """`HighErrorRateCritical (backend=rust) firing since 01:02:03: rust error rate is 100%`"""
    about = f" ({alert.about()})" if alert.about() else ""
    since = _clock(alert.starts_at)
    return (f"{alert.name}{about} firing" + (f" since {since}" if since else "")
            + (f": {alert.summary}" if alert.summary else ""))


def refuse_start(settings: Settings) -> None:
    """A migration does not start while a critical alert fires; the error names it."""
    found = held(settings)
    firing = critical(found[0]) if found else []
    if firing:
        more = f" (and {len(firing) - 1} more)" if len(firing) > 1 else ""
        raise Failure(f"not starting: critical alert {describe(firing[0])}{more}; fix it, or "
                      "silence it for the migration window with `vrm silence`")


def gate(alerts: list[HeldAlert] | None, where: str = "alertmanager") -> Gate | None:
    """Fails while a critical alert about rust or the proxy fires; None when no alert source
    answers (the step is judged on its other gates, as with parity off)."""
    if alerts is None:
        return None
    threshold = f"fail while a critical alert about rust or the proxy fires ({where})"
    firing = critical(alerts, about_migration=True)
    if not firing:
        return Gate(GATE_NAME, "pass", "none firing", threshold)
    more = f" (+{len(firing) - 1} more)" if len(firing) > 1 else ""
    return Gate(GATE_NAME, "fail", describe(firing[0]) + more, threshold)


# --- hearing: the journal of alerts firing and resolved ---------------------------------------

RESEND_GRACE_S = 90.0
"""A freshly (re)started Alertmanager holds no alerts until Prometheus resends them (every
minute): until it has run this long, an alert missing from it is not called resolved."""


def settled(settings: Settings) -> Callable[[], bool]:
    """Whether Alertmanager has run long enough for a missing alert to mean resolved; asked
    only when one is missing."""
    def ask() -> bool:
        try:
            return alertmanager.uptime_s(monitoring.alertmanager_url(settings)) >= \
                RESEND_GRACE_S
        except AlertmanagerUnavailable:
            return False
    return ask


def hear(paths: StateDir, journal: Journal, alerts: list[HeldAlert],
         settled: Callable[[], bool] = lambda: True) -> list[Record]:
    """Journal the alerts that began firing and those that ended since any vrm last heard;
    the records written. `alerts` must be Alertmanager's whole current list; `settled()`
    says whether an alert missing from it has ended (not: Alertmanager just restarted)."""
    now = {f"{a.fingerprint}@{a.starts_at}": a for a in alerts
           if a.labels.get("source") != VRM and a.state in ("active", "suppressed")}
    written: list[Record] = []
    fd = os.open(paths.alerts_heard, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            known = json.loads(os.pread(fd, 1 << 20, 0) or b"{}")
        except ValueError:  # a file cut short: heard again, never a crash
            known = {}
        if not isinstance(known, dict):
            known = {}
        for key, alert in now.items():
            if key not in known:
                silenced = "" if alert.firing else " (silenced or inhibited: nobody notified)"
                written.append(journal.append(Record(
                    action="alert", result="failed", operator="alertmanager",
                    detail=f"{alert.severity or 'alert'}: {describe(alert)}{silenced}")))
        gone = [key for key in known if key not in now]
        if gone and not settled():
            now_known = {**{k: known[k] for k in gone}, **{k: _heard(a) for k, a in now.items()}}
        else:
            now_known = {k: _heard(a) for k, a in now.items()}
            for key in gone:
                written.append(journal.append(Record(
                    action="alert", result="ok", operator="alertmanager",
                    detail=f"resolved: {known[key]}")))
        if now_known != known:
            data = json.dumps(now_known).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    return written


@dataclass
class Listener:
    """The guard's ear: asks Alertmanager at most every POLL_S, journals what it hears and
    gives the step its alert gate."""

    settings: Settings
    journal: Journal
    _next: float = 0.0
    _gate: Gate | None = None
    error: str = ""  # the newest journal write that failed

    @property
    def last(self) -> Gate | None:
        """The gate as the newest poll left it (no call)."""
        return self._gate

    def poll(self) -> Gate | None:
        now = time.monotonic()
        if now < self._next:
            return self._gate
        self._next = now + POLL_S
        found = held(self.settings)
        if found is not None and found[1] == "alertmanager":
            try:
                hear(self.settings.paths, self.journal, found[0], settled(self.settings))
            except OSError as exc:  # a full disk: the gate still counts
                self.error = f"alerts not journaled: {exc.strerror or exc}"
        self._gate = gate(found[0], found[1]) if found else None
        return self._gate


# --- rollout events as notifications ------------------------------------------------------------

def notify(settings: Settings, migration: str, event: str, step: str, detail: str) -> str:
    """Post a rollout event to Alertmanager (label source="vrm"), whose `rollout` route sends
    it at once to the same webhooks, Slack and e-mail as alerts. Best effort and quick: a
    migration never waits on its notifications. "" when sent (or not one to send), else why
    not."""
    severity = EVENTS.get(event)
    if severity is None or not settings.monitoring:
        return ""
    now = datetime.now(UTC)
    event_alert = {
        "labels": {"alertname": "MigrationEvent", "source": VRM, "severity": severity,
                   "event": event, "migration": migration, "step": step,
                   "event_id": uuid.uuid4().hex[:12]},
        "annotations": {"summary": detail},
        "startsAt": now.isoformat(), "endsAt": (now + EVENT_TTL).isoformat(),
    }
    try:
        alertmanager.post_alerts(monitoring.alertmanager_url(settings), [event_alert], 1.0)
    except AlertmanagerUnavailable as exc:
        return str(exc)
    return ""


def _heard(alert: HeldAlert) -> str:
    """How a resolved alert is named in the journal."""
    about = f" ({alert.about()})" if alert.about() else ""
    return f"{alert.name}{about}"


def _clock(stamp: str) -> str:
    """HH:MM:SS (local time) of an RFC 3339 time; "" when it is not one."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", stamp.replace("Z", "+00:00"))  # Go's nanoseconds
    try:
        return datetime.fromisoformat(text).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return ""


# --- what the faces show and do: the Alerts pane, silences ---------------------------------------

def pane(settings: Settings, journal: Journal, timeout: float = 1.0) -> list[prometheus.Alert]:
    """The Alerts pane's list: Alertmanager's alerts (firing, silenced, inhibited) and
    Prometheus's pending ones (and firing ones not yet sent); Prometheus's alone when
    Alertmanager does not answer. What
    Alertmanager holds is heard (journaled once) on the way."""
    prometheus_url = f"http://127.0.0.1:{settings.prometheus_port}"
    try:
        found = alertmanager.alerts(monitoring.alertmanager_url(settings), timeout)
    except AlertmanagerUnavailable:
        return prometheus.alerts(prometheus_url, timeout)
    with contextlib.suppress(OSError):  # a full disk: the pane still shows what fires
        hear(settings.paths, journal, found, settled(settings))
    try:
        evaluated = prometheus.alerts(prometheus_url, timeout)
    except PrometheusUnavailable:
        evaluated = []

    def key(name: str, labels: dict[str, str]) -> tuple[str, str, str]:
        return name, labels.get("backend", ""), labels.get("service", "")

    held_now = {key(a.name, a.labels) for a in found}
    # pending ones, and firing ones Alertmanager has not been sent yet
    extra = [a for a in evaluated if a.state == "pending" or key(a.name, a.labels)
             not in held_now]
    return [alertmanager.as_alert(a) for a in found if a.labels.get("source") != VRM] + extra


_SPAN = re.compile(r"(\d+)(w|d|h|m|s)")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_span(text: str) -> timedelta:
    """`--for`: 90s, 30m, 1h, 2h30m, 1d (up to 4 weeks)."""
    spaced = text.strip().lower()
    if not re.fullmatch(r"(\d+(w|d|h|m|s))+", spaced):
        raise BadInput(f"--for {shown(text)}: expected a duration such as 30m, 1h or 2h30m")
    seconds = sum(int(n) * _SECONDS[unit] for n, unit in _SPAN.findall(spaced))
    if not 0 < seconds <= 4 * 604800:
        raise BadInput(f"--for {shown(text)}: expected more than 0 and at most 4w")
    return timedelta(seconds=seconds)


def _manager(settings: Settings) -> str:
    if not settings.monitoring:
        raise Failure("monitoring is off (VRM_MONITORING=0): there is no Alertmanager")
    return monitoring.alertmanager_url(settings)


def silence(settings: Settings, journal: Journal, matchers: list[str], span: timedelta,
            who: str, comment: str = "") -> str:
    """Silence the alerts `matchers` select for `span` (a migration window); journaled with
    who asked. The silence's id."""
    if not matchers:
        raise BadInput("vrm silence: name what to silence, e.g. alertname=HighErrorRate "
                       "(all of them: alertname=~.+)")
    parsed = [alertmanager.parse_matcher(text) for text in matchers]
    comment = comment or f"vrm silence by {who}"
    silence_id = alertmanager.create_silence(_manager(settings), parsed, span, who, comment)
    with contextlib.suppress(OSError):  # the silence holds; `vrm silence list` shows it
        journal.append(Record(action="silence", result="ok", operator=who,
                              detail=f"silenced {' '.join(matchers)} for {span} "
                                     f"(id {silence_id}): {comment}"))
    return silence_id


def silences(settings: Settings) -> list[alertmanager.Silence]:
    return alertmanager.silences(_manager(settings))


def expire(settings: Settings, journal: Journal, silence_id: str, who: str) -> None:
    alertmanager.expire_silence(_manager(settings), silence_id)
    with contextlib.suppress(OSError):
        journal.append(Record(action="silence", result="ok", operator=who,
                              detail=f"expired silence {silence_id}"))
