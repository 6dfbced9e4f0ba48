from __future__ import annotations

import re
from pathlib import Path

import pytest

from vrm_tui.core.errors import NginxTestFailed, SplitError
from vrm_tui.core.paths import StateDir
from vrm_tui.core.split import Split, parse_weight
from vrm_tui.traffic import nginx


@pytest.mark.parametrize("text", ["-1", "101", "abc", "50.5", "", " ", "1e2", "0x10"])
def test_bad_weights_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(SplitError) as caught:
        parse_weight(text, "--rust-weight")
    assert f"--rust-weight={text!r}" in str(caught.value)


def test_split_values() -> None:
    assert parse_weight(" 25 ") == 25
    assert Split(30).typescript == 70 and Split(30).as_dict() == {"rust": 30, "typescript": 70}
    assert Split(95).moved(10) == Split(100) and Split(5).moved(-10) == Split(0)
    with pytest.raises(SplitError):
        Split(True)


def _upstream(split: Split) -> str:
    return nginx.render_upstream(split, 7, "127.0.0.1:3001", "127.0.0.1:3002")


def test_rust_zero_is_written_down_not_weight_zero() -> None:
    text = _upstream(Split(0))
    assert "server 127.0.0.1:3001 down;" in text and "weight=0" not in text


def test_rust_hundred_keeps_typescript_as_backup() -> None:
    text = _upstream(Split(100))
    assert "server 127.0.0.1:3002 backup;" in text and "weight=100" in text


def test_generation_marker_carries_generation_and_split() -> None:
    text = _upstream(Split(33))
    assert "weight=33" in text and "weight=67" in text
    assert '"generation": 7, "rust": 33, "typescript": 67' in text


def _params(tmp_path: Path, rate: int) -> nginx.ProxyParams:
    return nginx.ProxyParams(
        listen="127.0.0.1:1", status_listen="127.0.0.1:2", pid_file=tmp_path / "nginx.pid",
        error_log=tmp_path / "e.log",
        access_log=tmp_path / "a.log", temp_dir=tmp_path / "tmp",
        comparison_file=tmp_path / "c.json", rate_limit=rate,
        rust_address="127.0.0.1:3001", ts_address="127.0.0.1:3002",
    )


@pytest.mark.parametrize("weight", [0, 1, 50, 99, 100])
@pytest.mark.parametrize("rate", [0, 100])
def test_every_rendering_passes_nginx_t(tmp_path: Path, weight: int, rate: int) -> None:
    store = nginx.ConfigStore(tmp_path / "nginx")
    params = _params(tmp_path, rate)
    nginx.ensure_dirs(params)
    gen = store.write(1, nginx.render_main(params), _upstream(Split(weight)))
    nginx.test_config(gen.main, error_log=tmp_path / "e.log")
    main = gen.main.read_text()
    assert ("limit_req zone=vrm_api" in main) == (rate > 0)
    assert not re.search(r"\{\{\s*[A-Z_]+\s*\}\}", main)


def test_nginx_t_failure_carries_nginxs_message(tmp_path: Path) -> None:
    store = nginx.ConfigStore(tmp_path / "nginx")
    gen = store.write(1, "events {}\nhttp { bogus_directive on; }\n", "")
    with pytest.raises(NginxTestFailed, match="bogus_directive"):
        nginx.test_config(gen.main, error_log=tmp_path / "e.log")


def test_store_swaps_current_atomically_and_prunes(tmp_path: Path) -> None:
    store = nginx.ConfigStore(tmp_path)
    for number in range(1, 14):
        store.activate(store.write(number, "main", _upstream(Split(number))))
    store.prune()
    numbers = [g.number for g in store.generations()]
    assert numbers == list(range(4, 14))
    current = store.current()
    assert current is not None and current.number == 13 and current.split() == Split(13)
    assert store.main_config.resolve() == (tmp_path / "gen-000013" / "nginx.conf")


def test_template_has_the_seed_routes() -> None:
    text = nginx.TEMPLATE.read_text()
    for route in ("/api/v1/vision/rust/", "/api/v1/vision/typescript/", "/api/v1/vision/",
                  "= /health", "= /metrics", "= /performance-comparison"):
        assert f"location {route}" in text
    assert "server_tokens off;" in text and "non_idempotent" not in text.replace(
        "`non_idempotent`", "")


def test_only_the_host_may_even_ask_to_change_the_split_under_compose(tmp_path: Path) -> None:
    """The status listener admits the compose subnet (the exporter scrapes /nginx_status);
    `/vrm/split` admits loopback and the network's gateway (the host) only."""
    from dataclasses import replace

    from vrm_tui.traffic import live

    params = replace(_params(tmp_path, 0), status_allow=("127.0.0.1", "172.30.9.0/24"),
                     split_allow=("127.0.0.1", "172.30.9.1"),
                     live=live.live_split(StateDir(tmp_path)))
    text = nginx.render_main(params)
    split_block = text.split("location = /vrm/split {", 1)[1].split("}", 1)[0]
    assert "allow 127.0.0.1; allow 172.30.9.1; deny all;" in split_block
    assert "172.30.9.0/24" not in split_block
