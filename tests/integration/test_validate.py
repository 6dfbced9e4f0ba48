"""vrm validate against a real stack: passes when healthy, fails exactly the right rows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import new_stack


def _rows(result) -> dict[str, str]:
    return {row["name"]: row["result"] for row in json.loads(result.stdout)}


def test_validate_passes_a_healthy_stack_and_flags_weak_settings(tmp_path: Path) -> None:
    stack = new_stack(tmp_path, PROXY_RATE_LIMIT="50", GRAFANA_PASSWORD="a-long-random-secret")
    stack.up()
    try:
        healthy = stack.vrm("validate", "--json", timeout=120)
        rows = _rows(healthy)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert all(result in ("PASS", "WARN") for result in rows.values()), rows
        assert rows["rate limit rejects a burst"] == "PASS"
        assert rows["observed split matches served"] == "PASS"
        # The profiles give 3.5x; on this shared 2-core machine contention adds the same
        # milliseconds to both and can pull the interval's low end under 2x (a WARN), never
        # to parity (the FAIL the row exists for).
        speed = next(r for r in json.loads(healthy.stdout)
                     if r["name"] == "rust faster than typescript")
        assert speed["result"] == "PASS" or float(speed["detail"].split("x")[0]) >= 1.5, speed
        assert rows["status endpoints loopback only"] == "PASS"
    finally:
        stack.down()

    (tmp_path / "weak").mkdir()
    weak = new_stack(tmp_path / "weak", PROXY_RATE_LIMIT="0", GRAFANA_PASSWORD="admin123")
    weak.up()
    try:
        result = weak.vrm("validate", "--json", timeout=120)
        rows = _rows(result)
        assert result.returncode == 1
        failed = {name for name, verdict in rows.items() if verdict == "FAIL"}
        assert failed == {"rate limit rejects a burst", "no default Grafana password"}, rows
    finally:
        weak.down()


def test_validate_refuses_a_bad_host(tmp_path: Path) -> None:
    assert new_stack(tmp_path).vrm("validate", "--host", "not a host").returncode == 2
