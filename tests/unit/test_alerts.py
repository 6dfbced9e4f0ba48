"""Alerts without a network: settings, the rendered configs, the alert gate, hearing once,
matchers and spans. The real Prometheus and Alertmanager are in test_alerts.py."""

from __future__ import annotations

import shutil
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from vrm_tui import settings as settings_mod
from vrm_tui.core.errors import BadInput, SettingsError
from vrm_tui.journal import Journal
from vrm_tui.migrate import alerts
from vrm_tui.stack import monitoring
from vrm_tui.telemetry.alertmanager import HeldAlert, parse_matcher


def _load(tmp_path: Path, **env: str) -> settings_mod.Settings:
    return settings_mod.load(environ=env, deploy_dir=tmp_path)


@pytest.mark.parametrize(("name", "value"), [
    ("ALERT_WEBHOOK_URLS", "ftp://hooks.example/x"),
    ("ALERT_WEBHOOK_URLS", "https://ok.example/a,not a url"),
    ("ALERT_SLACK_WEBHOOK_URL", "hooks.slack.com/services/x"),
    ("ALERT_EMAIL_TO", "oncall"),
    ("ALERT_SMTP_SMARTHOST", "smtp.example.com"),
    ("ALERT_GROUP_WAIT", "soon"),
    ("ALERT_REPEAT_INTERVAL", "0s"),
    ("ALERT_RULE_FOR", "2 minutes"),
    ("PROMETHEUS_EVALUATION_INTERVAL", "-1s"),
    ("ALERTMANAGER_PORT", "70000"),
])
def test_a_bad_alert_setting_names_itself(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        _load(tmp_path, **{name: value})


def test_mail_needs_a_relay_and_a_sender(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ALERT_SMTP_SMARTHOST"):
        _load(tmp_path, ALERT_EMAIL_TO="oncall@example.com")
    with pytest.raises(SettingsError, match="ALERT_SMTP_FROM"):
        _load(tmp_path, ALERT_EMAIL_TO="oncall@example.com",
              ALERT_SMTP_SMARTHOST="smtp.example.com:587")


def test_alertmanager_port_must_differ_from_the_others(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ALERTMANAGER_PORT"):
        _load(tmp_path, ALERTMANAGER_PORT="9090")


def _routes(tmp_path: Path) -> settings_mod.Settings:
    return _load(tmp_path, ALERT_WEBHOOK_URLS="http://127.0.0.1:9/a, https://b.example/hook",
                 ALERT_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T/B/secret",
                 ALERT_EMAIL_TO="oncall@example.com",
                 ALERT_SMTP_SMARTHOST="smtp.example.com:587", ALERT_SMTP_FROM="vrm@example.com",
                 ALERT_SMTP_USERNAME="vrm", ALERT_SMTP_PASSWORD="hunter2",
                 ALERT_GROUP_WAIT="10s", ALERT_REPEAT_INTERVAL="2h")


def test_routes_render_into_both_receivers_and_only_alerts_say_resolved(
        tmp_path: Path) -> None:
    config = yaml.safe_load(monitoring.render_alertmanager(_routes(tmp_path), Path("/t.tmpl")))
    assert config["route"]["group_by"] == ["alertname", "service"]
    assert (config["route"]["group_wait"], config["route"]["repeat_interval"]) == ("10s", "2h")
    receivers = {r["name"]: r for r in config["receivers"]}
    default, rollout = receivers["default"], receivers["rollout"]
    assert [w["url"] for w in default["webhook_configs"]] == ["http://127.0.0.1:9/a",
                                                               "https://b.example/hook"]
    assert all(c["send_resolved"] for c in default["webhook_configs"] + default["slack_configs"]
               + default["email_configs"])
    assert not any(c["send_resolved"] for c in rollout["webhook_configs"])
    assert config["global"]["smtp_auth_password"] == "hunter2"
    assert config["route"]["routes"][0]["matchers"] == ['source="vrm"']
    pairs = {(r["source_matchers"][0], r["target_matchers"][0]) for r in config["inhibit_rules"]}
    assert ('alertname="HighErrorRateCritical"', 'alertname="HighErrorRate"') in pairs


def test_the_rendered_config_is_private_and_amtool_accepts_it(tmp_path: Path) -> None:
    settings = _routes(tmp_path)
    path = monitoring.write_alertmanager_config(settings, tmp_path / "am")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    if shutil.which("amtool"):
        monitoring.check_alertmanager(settings)


def test_amtool_names_the_setting_whose_route_it_refuses(tmp_path: Path) -> None:
    if not shutil.which("amtool"):
        pytest.skip("amtool is not installed")
    settings = replace(_routes(tmp_path), alert_webhook_urls=("http://hooks:abc/x",))
    with pytest.raises(SettingsError, match=r"^ALERT_WEBHOOK_URLS: .*hooks:abc"):
        monitoring.check_alertmanager(settings)


def test_rule_for_and_intervals_are_overridable_and_the_shipped_ones_stand(
        tmp_path: Path) -> None:
    shipped = _load(tmp_path)
    assert monitoring.render_rules(shipped) == (monitoring.MONITORING /
                                                "alert_rules.yml").read_text()
    fast = _load(tmp_path, ALERT_RULE_FOR="2s", PROMETHEUS_SCRAPE_INTERVAL="1s",
                 PROMETHEUS_EVALUATION_INTERVAL="1s")
    rules = yaml.safe_load(monitoring.render_rules(fast))
    assert {r["for"] for g in rules["groups"] for r in g["rules"]} == {"2s"}
    config = yaml.safe_load(monitoring.render_prometheus(fast, tmp_path / "rules.yml"))
    assert (config["global"]["scrape_interval"], config["global"]["evaluation_interval"]) == \
        ("1s", "1s")
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        [f"127.0.0.1:{fast.alertmanager_port}"]


def _held(name: str, severity: str = "critical", state: str = "active",
          fingerprint: str = "f1", **labels: str) -> HeldAlert:
    return HeldAlert(fingerprint, name, severity, state, f"{name} summary",
                     "2026-12-05T00:00:00.123456789Z",
                     {"alertname": name, "severity": severity, **labels})


def test_the_gate_fails_only_on_a_firing_critical_about_rust_or_the_proxy() -> None:
    assert alerts.gate(None) is None  # no alert source: judged on the other gates
    assert alerts.gate([]).status == "pass"  # type: ignore[union-attr]
    quiet = [_held("HighErrorRateCritical", backend="typescript"),
             _held("HighErrorRate", "warning", backend="rust"),
             _held("HighErrorRateCritical", state="suppressed", backend="rust"),
             _held("MigrationEvent", source="vrm", backend="rust")]
    assert alerts.gate(quiet).status == "pass"  # type: ignore[union-attr]
    for loud in (_held("HighErrorRateCritical", backend="rust"),
                 _held("ServiceDown", service="vision-proxy"), _held("ProxyDown")):
        gate = alerts.gate([*quiet, loud])
        assert gate is not None and gate.status == "fail" and loud.name in gate.value


def test_hearing_journals_each_firing_and_each_resolution_once(tmp_path: Path) -> None:
    paths = settings_mod.Settings(state_dir=tmp_path).paths
    journal = Journal(paths.journal)
    firing = [_held("HighErrorRateCritical", backend="rust")]
    threads = [threading.Thread(target=alerts.hear, args=(paths, journal, firing))
               for _ in range(4)]  # the guard and TUIs hear at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alerts.hear(paths, journal, firing)
    alerts.hear(paths, journal, [])
    alerts.hear(paths, journal, [])
    records = [(r.action, r.result, r.detail) for r in journal.read()]
    assert len(records) == 2, records
    assert records[0][:2] == ("alert", "failed") and "HighErrorRateCritical" in records[0][2]
    assert "backend=rust" in records[0][2]
    assert records[1][:2] == ("alert", "ok") and records[1][2].startswith("resolved:")


@pytest.mark.parametrize(("text", "expected"), [
    ("alertname=HighErrorRate", ("alertname", "HighErrorRate", False, True)),
    ("backend!=typescript", ("backend", "typescript", False, False)),
    ("service=~vision-.*", ("service", "vision-.*", True, True)),
    ("severity!~warn.*", ("severity", "warn.*", True, False)),
])
def test_matchers(text: str, expected: tuple[str, str, bool, bool]) -> None:
    m = parse_matcher(text)
    assert (m["name"], m["value"], m["isRegex"], m["isEqual"]) == expected


@pytest.mark.parametrize("text", ["alertname", "=x", "a=", "a=~(", "1a=b"])
def test_bad_matchers_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="matcher"):
        parse_matcher(text)


def test_spans() -> None:
    assert alerts.parse_span("2h30m").total_seconds() == 9000
    for bad in ("soon", "0m", "5w", "1.5h"):
        with pytest.raises(BadInput, match="--for"):
            alerts.parse_span(bad)


def test_an_alert_missing_from_a_fresh_alertmanager_is_not_called_resolved(
        tmp_path: Path) -> None:
    """A restarted Alertmanager holds nothing until Prometheus resends (every minute)."""
    paths = settings_mod.Settings(state_dir=tmp_path).paths
    journal = Journal(paths.journal)
    firing = [_held("ProxyDown")]
    alerts.hear(paths, journal, firing)
    assert not alerts.hear(paths, journal, [], settled=lambda: False)
    assert not alerts.hear(paths, journal, firing, settled=lambda: False)  # back: not new
    resolved = alerts.hear(paths, journal, [], settled=lambda: True)
    assert [r.detail for r in resolved] == ["resolved: ProxyDown"]
