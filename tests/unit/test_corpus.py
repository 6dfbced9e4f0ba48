"""Request corpora: the shipped sets load, bad files are one line naming file and field, the
weighted schedule keeps proportions, capture turns an access log into a replayable corpus."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from vrm_tui import cli
from vrm_tui.core import corpus
from vrm_tui.core.errors import CorpusError
from vrm_tui.telemetry.capture import capture
from vrm_tui.traffic.nginx import backend_name_map


@pytest.mark.parametrize("name", ["default", "rehearsal", "image-upload"])
def test_shipped_sets_load(name: str) -> None:
    found = corpus.load(corpus.find(name, Path("/nonexistent")))
    assert found.requests and found.name == name


def test_default_follows_the_backends() -> None:
    foreign = corpus.configured("", Path("/nonexistent"), rehearsal=False)
    assert [(r.method, r.path) for r in foreign.requests] == [("GET", "/api/v1/vision/metrics")]
    rehearsal = corpus.configured("", Path("/nonexistent"), rehearsal=True)
    assert {r.method for r in rehearsal.requests} == {"GET", "POST"}


def test_bodies_inline_and_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(b"\x89PNG fake")
    path = tmp_path / "set.yaml"
    path.write_text("requests:\n"
                    "  - {method: post, path: /p, body: {model: resnet50}}\n"
                    "  - {method: POST, path: /t, body: hello}\n"
                    "  - {method: POST, path: /i, body_file: cat.png,"
                    " headers: {Content-Type: image/png}, weight: 2.5}\n")
    json_body, text, image = corpus.load(path).requests
    assert json.loads(json_body.body) == {"model": "resnet50"}
    assert json_body.header("content-type") == "application/json"
    assert text.body == b"hello" and (text.header("Content-Type") or "").startswith("text/plain")
    assert image.body == b"\x89PNG fake" and image.header("Content-Type") == "image/png"
    assert image.weight == 2.5


@pytest.mark.parametrize(("text", "where"), [
    ("[1, 2]", "expected a mapping"),
    ("requests: []", "requests: expected a non-empty list"),
    ("requests:\n  - {path: /x, weight: 0}", "requests[0].weight: expected a number above 0"),
    ("requests:\n  - {path: x}", "requests[0].path: expected an absolute path"),
    ("requests:\n  - {path: /x, body_file: missing.bin}", "requests[0].body_file: cannot read"),
    ("requests:\n  - {path: /x, body: a, body_file: b}", "requests[0].body_file: give body"),
    ("requests:\n  - {path: /x, headers: {Host: h}}", "requests[0].headers.Host: set by"),
    ("requests:\n  - {path: /x, colour: red}", "requests[0].colour: unknown field"),
    ("requests: [", "not valid YAML at line"),
])
def test_a_bad_corpus_is_one_line_naming_file_and_field(tmp_path: Path, text: str,
                                                        where: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CorpusError) as caught:
        corpus.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and where in message and "\n" not in message


def test_an_unknown_set_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no such request set.*default.*rehearsal"):
        corpus.find("nope", tmp_path)


def test_the_schedule_keeps_the_weights() -> None:
    made = corpus.Corpus("w", (corpus.Request("a", "GET", "/a", (), b"", 3),
                               corpus.Request("b", "GET", "/b", (), b"", 1),
                               corpus.Request("c", "GET", "/c", (), b"", 0.001)))
    counts = Counter(r.name for r in made.schedule(100))
    assert counts["a"] == 75 and counts["b"] == 25 and counts["c"] == 1
    assert made.heaviest().name == "a"


def test_dump_reads_back(tmp_path: Path) -> None:
    original = corpus.load(corpus.find("rehearsal", tmp_path))
    path = tmp_path / "again.yaml"
    path.write_text(corpus.dump(original, ["a comment"]))
    again = corpus.load(path)
    assert [(r.method, r.path, r.body, r.weight) for r in again.requests] == [
        (r.method, r.path, r.body, r.weight) for r in original.requests]


def test_capture_keeps_replayable_requests_and_lists_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    entries = [{"route": "balanced", "method": "GET", "uri": "/api/v1/vision/metrics?k=s"}] * 3
    entries += [{"route": "rust", "method": "GET", "uri": "/api/v1/vision/rust/metrics"}]
    entries += [{"route": "balanced", "method": "POST", "uri": "/api/v1/vision/process"}] * 2
    entries += [{"route": "other", "method": "GET", "uri": "/health"}]
    log.write_text("".join(json.dumps(e) + "\nnot json\n" for e in entries))
    found = capture(log, 100, redact=("k",))
    assert found.corpus is not None and found.seen == 6
    assert [(r.path, r.weight) for r in found.corpus.requests] == [
        ("/api/v1/vision/metrics?k=REDACTED", 3.0), ("/api/v1/vision/metrics", 1.0)]
    assert found.needs_body == {("POST", "/api/v1/vision/process"): 2}
    text = corpus.dump(found.corpus, found.header()) + found.trailer()
    assert "# - {method: POST, path: \"/api/v1/vision/process\", weight: 2" in text
    path = tmp_path / "captured.yaml"
    path.write_text(text)
    assert len(corpus.load(path).requests) == 2


def test_the_map_names_the_last_upstream() -> None:
    ips = backend_name_map("127.0.0.1:3001", "10.0.0.5:3002")
    assert '"~(^|, )127\\.0\\.0\\.1:3001$" rust;' in ips
    assert '"~(^|, )10\\.0\\.0\\.5:3002$" typescript;' in ips
    names = backend_name_map("vision-manager-rust:3001", "vision-manager-typescript:3002")
    assert '"~(^|, )[^,]*:3001$" rust;' in names
    same_port = backend_name_map("rust.internal:8080", "ts.internal:8080")
    assert "rust;" not in same_port and 'default "";' in same_port


def test_cli_refuses_a_bad_requests_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("RUST_BACKEND_URL", "TS_BACKEND_URL", "VRM_REQUESTS", "VRM_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("requests:\n  - {path: /x, weight: -1}\n")
    assert cli.main(["benchmark", "--deploy-dir", str(tmp_path), "--requests-file",
                     str(bad)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"vrm: {bad}: requests[0].weight")
    assert cli.main(["capture", "--deploy-dir", str(tmp_path), "--sample", "0"]) == 2
