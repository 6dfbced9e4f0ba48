"""Parity mirroring: nginx rendering (checked by nginx -t), the persisted state, PARITY_SAMPLE,
and the comparator's intake and metrics against real in-process backends."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from vrm_tui import settings as settings_mod
from vrm_tui.core.errors import SettingsError
from vrm_tui.core.paths import StateDir
from vrm_tui.core.split import Split
from vrm_tui.parity.config import load_parity_config, parse_parity_config
from vrm_tui.parity.service import Comparator, Sample, Targets, build_app
from vrm_tui.system.procs import free_ports
from vrm_tui.traffic import nginx
from vrm_tui.traffic.mirror import Mirror, MirrorState

ROUTES = ("GET /api/v1/vision/metrics", "POST /api/v1/vision/process")


def _render(tmp_path: Path, mirror: Mirror) -> str:
    params = nginx.ProxyParams(
        listen="127.0.0.1:1", status_listen="127.0.0.1:2", pid_file=tmp_path / "nginx.pid",
        error_log=tmp_path / "e.log", access_log=tmp_path / "a.log", temp_dir=tmp_path / "tmp",
        comparison_file=tmp_path / "c.json", rate_limit=0, rust_address="127.0.0.1:3001",
        ts_address="127.0.0.1:3002", mirror=mirror)
    nginx.ensure_dirs(params)
    gen = nginx.ConfigStore(tmp_path / "nginx").write(
        1, nginx.render_main(params), nginx.render_upstream(Split(10), 1, "127.0.0.1:3001",
                                                            "127.0.0.1:3002"))
    nginx.test_config(gen.main, error_log=tmp_path / "e.log")
    return gen.main.read_text()


@pytest.mark.parametrize("mirror", [Mirror(0, 3011, ROUTES), Mirror(50, 3011, ())])
def test_off_renders_no_mirror_directive_at_all(tmp_path: Path, mirror: Mirror) -> None:
    main = _render(tmp_path, mirror)
    assert not re.search(r"^\s*mirror\b", main, re.M) and "vrm_parity" not in main


@pytest.mark.parametrize("sample", [0.5, 12.25, 100])
def test_on_renders_sampling_routes_and_an_internal_location_nginx_accepts(
        tmp_path: Path, sample: float) -> None:
    main = _render(tmp_path, Mirror(sample, 4567, ROUTES))
    assert len(re.findall(r"^\s*mirror /vrm/_parity;", main, re.M)) == 2  # balanced only
    assert ("* 1;" in main) == (sample == 100) and (f"{sample:g}% 1;" in main) != (sample == 100)
    assert "server 127.0.0.1:4567;" in main
    assert '"~^POST /api/v1/vision/process(\\?.*)?$" 1;' in main
    assert "proxy_pass http://vrm_parity/mirror$request_uri;" in main
    assert "proxy_set_header X-VRM-Method $request_method;" in main
    pinned = main.split("location /api/v1/vision/rust/", 1)[1].split("}", 1)[0]
    assert "mirror" not in pinned


def test_state_round_trips_and_a_broken_file_means_off(tmp_path: Path) -> None:
    path = tmp_path / "parity-state.json"
    assert MirrorState.load(path) == MirrorState()
    MirrorState().with_sample(2.5, ROUTES, "me").save(path)
    loaded = MirrorState.load(path)
    assert (loaded.sample, loaded.routes, loaded.by) == (2.5, ROUTES, "me")
    for text in ("{", "[]", '{"sample": 300, "routes": []}', '{"sample": "x"}'):
        path.write_text(text)
        assert MirrorState.load(path).sample is None
    path.write_text(json.dumps({"sample": 5, "routes": ["GET /ok", "GET /a;b", "X /y"]}))
    assert MirrorState.load(path).routes == ("GET /ok",)


@pytest.mark.parametrize("raw", ["-1", "101", "abc", "1.234", "", "nan", "1e2"])
def test_bad_parity_sample_names_the_variable(raw: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^PARITY_SAMPLE="):
        settings_mod.load(environ={"PARITY_SAMPLE": raw}, deploy_dir=tmp_path)


def test_parity_sample_accepts_percent_forms(tmp_path: Path) -> None:
    for raw, value in (("0", 0.0), ("5", 5.0), ("0.5", 0.5), ("100", 100.0), ("12.5%", 12.5)):
        loaded = settings_mod.load(environ={"PARITY_SAMPLE": raw}, deploy_dir=tmp_path)
        assert loaded.parity_sample == value


# --- the comparator against real in-process backends ---------------------------------------

async def _backend(name: str, label: str, port: int) -> web.AppRunner:
    async def process(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"request_id": request.headers.get("X-Request-ID", "") +
                                  str(id(body)), "result": {"label": label, "n": body["n"]},
                                  "shadow": request.headers.get("X-VRM-Shadow")},
                                 headers={"X-VRM-Backend": name})

    app = web.Application()
    app.router.add_post("/api/v1/vision/process", process)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _sample(n: int, method: str = "POST", uri: str = "/api/v1/vision/process") -> Sample:
    return Sample(method, uri, (("Content-Type", "application/json"),),
                  json.dumps({"n": n}).encode())


async def test_comparator_compares_marks_shadow_and_counts_by_path(tmp_path: Path) -> None:
    ts_port, rust_port = free_ports(2)
    runners = [await _backend("typescript", "cat", ts_port),
               await _backend("rust", "dog", rust_port)]
    config = parse_parity_config({"mirror": {"routes": list(ROUTES)}}, "test")
    comparator = Comparator(config, Targets(f"http://127.0.0.1:{ts_port}",
                                            f"http://127.0.0.1:{rust_port}"),
                            StateDir(tmp_path), max_rps=1000, queue_size=5, workers=2)
    try:
        for n in range(5):
            assert comparator.offer(_sample(n))
        assert not comparator.offer(_sample(5))  # full: dropped and counted
        assert not comparator.offer(_sample(6, "DELETE"))  # not a mirror route: refused
        async with aiohttp.ClientSession() as session:
            work = asyncio.create_task(comparator.run_workers(session))
            await asyncio.wait_for(comparator.queue.join(), 10)
            work.cancel()
        r = comparator.results
        assert (r.sampled, r.dropped, r.refused, r.failed) == (7, 1, 1, 0)
        paths = r.paths["POST /api/v1/vision/process"]
        assert paths["$.result.label"].mismatched == 5
        assert paths["$.request_id"].noise == 5  # differs between the two typescript answers
        assert paths["$.shadow"].equal == 5
        assert len(comparator.examples) == 5
        text = comparator.metrics()
        assert "vrm_parity_compared_total 5\n" in text and "vrm_parity_dropped_total 1\n" in text
        assert ('vrm_parity_mismatch_total{endpoint="POST /api/v1/vision/process",'
                'path="$.result.label"} 5') in text
        comparator.persist()
        assert json.loads((tmp_path / "parity-results.json").read_text())["sampled"] == 7
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_mirror_endpoint_answers_204_at_once_and_counts_a_dead_backend_as_failed(
        tmp_path: Path) -> None:
    dead, port = free_ports(2)
    comparator = Comparator(load_parity_config(), Targets(f"http://127.0.0.1:{dead}",
                                                          f"http://127.0.0.1:{dead}"),
                            StateDir(tmp_path), max_rps=1000)
    runner = web.AppRunner(build_app(comparator))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/mirror/api/v1/vision/process?x=1",
                                    json={"model": "yolov8"},
                                    headers={"X-VRM-Method": "POST"}) as answer:
                assert answer.status == 204
            queued = comparator.queue.get_nowait()
            assert (queued.method, queued.uri) == ("POST", "/api/v1/vision/process?x=1")
            assert json.loads(queued.body) == {"model": "yolov8"}
            await comparator.compare_one(session, queued)
            async with session.get(f"http://127.0.0.1:{port}/status") as answer:
                status = await answer.json()
        assert (status["sampled"], status["failed"], status["compared"]) == (1, 1, 0)
    finally:
        await runner.cleanup()
