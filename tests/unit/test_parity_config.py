"""configs/parity.yaml: the shipped defaults, and one named line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrm_tui.core.errors import ParityConfigError
from vrm_tui.parity.config import Route, load_parity_config
from vrm_tui.parity.diff import ArrayOrder, Kind, Tolerance


def test_shipped_config_suits_the_rehearsal_backends() -> None:
    config = load_parity_config()
    for noise in ("$.request_id", "$.timestamp", "$.processing_time_ms", "$.backend"):
        assert noise in config.rules.ignore
    assert config.rules.tolerances["$.result.detections[*].confidence"] == Tolerance(abs=0.01)
    assert config.mirrored("post", "/api/v1/vision/process")
    assert Route("POST", "/api/v1/vision/process") in config.mirror
    assert not config.mirrored("DELETE", "/api/v1/vision/process")
    metrics = config.rules_for("GET", "/api/v1/vision/metrics")
    assert "$.uptime_seconds" in metrics.ignore and "$.request_id" in metrics.ignore
    assert metrics.arrays["$.models"] == ArrayOrder("sort_by", "name")
    assert config.rules_for("POST", "/api/v1/vision/process") is config.rules
    assert "header:authorization" in config.redact and config.examples > 0


def test_route_rules_extend_the_global_ones(tmp_path: Path) -> None:
    path = tmp_path / "parity.yaml"
    path.write_text("ignore: [$.a]\ntolerance: {$.x: {abs: 1}}\nheaders: [etag]\n"
                    "routes:\n  GET /r:\n    ignore: [$.b]\n    tolerance: {$.x: {rel: 0.5}}\n")
    rules = load_parity_config(path).rules_for("GET", "/r")
    assert rules.ignore == {"$.a", "$.b"} and rules.tolerances["$.x"] == Tolerance(rel=0.5)
    assert rules.headers == ("etag",)
    (tmp_path / "empty.yaml").write_text("")
    assert load_parity_config(tmp_path / "empty.yaml").mirror == ()


@pytest.mark.parametrize(("text", "field"), [
    ("ignore: [nope]", "ignore[0]"),
    ("ignore: $.a", "ignore"),
    ("ignored: [$.a]", "ignored"),
    ("tolerance: {$.x: {abs: -1}}", "tolerance.$.x.abs"),
    ("tolerance: {$.x: {abs: .nan}}", "tolerance.$.x.abs"),
    ("tolerance: {$.x: {near: 1}}", "tolerance.$.x"),
    ("tolerance: {$.x: 0.1}", "tolerance.$.x"),
    ("tolerance: {$..x: {abs: 1}}", "tolerance.$..x"),
    ("arrays: {$.xs: shuffled}", "arrays.$.xs"),
    ("arrays: {$.xs: {sort_by: 3}}", "arrays.$.xs"),
    ("headers: [bad header]", "headers[0]"),
    ("routes: {FETCH /x: {}}", "routes.FETCH /x"),
    ("routes: {GET /x: {examples: 3}}", "routes.GET /x.examples"),
    ("mirror: {routes: [GET /a], side_effect_free: []}", "mirror.side_effect_free"),
    ("mirror: {routes: [GET]}", "mirror.routes[0]"),
    ("mirror: {paths: []}", "mirror"),
    ("examples: -1", "examples"),
    ("examples: many", "examples"),
    ("redact: [$.a, 3]", "redact[1]"),
    ("kinds: {$.a: clock}", "kinds.$.a"),
    ("kinds: {$.a: [id]}", "kinds.$.a"),
    ("routes: {GET /x: {kinds: {status: id}}}", "routes.GET /x.kinds.status"),
    ("timestamp_tolerance: -1", "timestamp_tolerance"),
    ("timestamp_tolerance: soon", "timestamp_tolerance"),
    ("[1, 2]", "top level"),
    ("ignore: [", "parity.yaml"),
])
def test_bad_values_raise_one_line_naming_file_and_field(tmp_path: Path, text: str,
                                                         field: str) -> None:
    path = tmp_path / "parity.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ParityConfigError) as caught:
        load_parity_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and field in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_kinds_and_timestamp_tolerance_are_read_per_route(tmp_path: Path) -> None:
    path = tmp_path / "parity.yaml"
    path.write_text("kinds: {$.at: timestamp}\ntimestamp_tolerance: 2.5\n"
                    "routes:\n  GET /r:\n    kinds: {$.n: counter}\n")
    config = load_parity_config(path)
    rules = config.rules_for("GET", "/r")
    assert rules.kinds == {"$.at": Kind.TIMESTAMP, "$.n": Kind.COUNTER}
    assert rules.timestamp_tolerance == 2.5 == config.rules.timestamp_tolerance


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ParityConfigError, match=r"nowhere\.yaml"):
        load_parity_config(tmp_path / "nowhere.yaml")


def test_side_effect_free_moved_to_the_one_declaration() -> None:
    """parity.yaml no longer says what may be repeated: configs/routes.yaml does, for nginx's
    retries and parity alike."""
    import pytest

    from vrm_tui.core.errors import ParityConfigError
    from vrm_tui.parity.config import parse_parity_config

    with pytest.raises(ParityConfigError, match=r"moved to configs/routes\.yaml"):
        parse_parity_config({"mirror": {"routes": ["GET /a"], "side_effect_free": []}}, "t")


@pytest.mark.parametrize(("content", "said"), [
    (b"mirror: {sample: \xff}\n", "not valid UTF-8 (byte 17)"),
    (b"mirror: [\n", "not valid YAML at line 2"),
])
def test_a_config_that_is_not_utf8_or_not_yaml_is_one_line(tmp_path: Path, content: bytes,
                                                          said: str) -> None:
    """Issue 21: a non-UTF-8 parity.yaml was a traceback; every config file goes through the
    one loader (core/yamlfile.load): file, line, problem."""
    bad = tmp_path / "parity.yaml"
    bad.write_bytes(content)
    with pytest.raises(ParityConfigError) as caught:
        load_parity_config(bad)
    assert str(caught.value).startswith(f"{bad}: ") and said in str(caught.value)
