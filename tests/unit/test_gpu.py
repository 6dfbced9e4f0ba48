"""The NVML path with a fake at the NVML call boundary (no GPU here; the real path was
checked on an H100: see tests/gpu/nvml_check.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import ModuleType, SimpleNamespace
from typing import cast

from vrm_tui.telemetry.gpu import GB, Owners, read_gpus


class FakeNvmlError(Exception):
    pass


def _fake(processes: list[tuple[int, int | None]], fail_init: bool = False) -> SimpleNamespace:
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if fail_init:
            raise FakeNvmlError("NVML Shared Library Not Found")

    return SimpleNamespace(
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: b"580.159.04",
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetName=lambda h: "NVIDIA H100 80GB HBM3",
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=int(6.5 * GB), total=80 * GB),
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=37, memory=12),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [
            SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in processes],
    )


def test_processes_are_mapped_to_backends_through_their_parents() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake = _fake([(child.pid, 2 * GB), (424242, 3 * GB), (1, None)])
        report = read_gpus(Owners({os.getpid(): "rust"}), nvml=cast(ModuleType, fake))
    finally:
        child.kill()
        child.wait()
    assert report.available and report.driver == "580.159.04"
    (gpu,) = report.gpus
    assert (gpu.name, round(gpu.used_gb, 1), gpu.total_gb, gpu.utilization_pct) == \
        ("NVIDIA H100 80GB HBM3", 6.5, 80, 37)
    assert gpu.used_by("rust") == 2.0 and gpu.used_by("typescript") == 0
    assert [p.owner for p in gpu.processes] == ["rust", None, None]
    assert gpu.processes[2].used_gb is None  # NVML may not know a process's memory
    assert fake.calls == ["init", "shutdown"]


def test_without_a_driver_the_report_says_so() -> None:
    report = read_gpus(nvml=cast(ModuleType, _fake([], fail_init=True)))
    assert not report.available
    assert report.error == "no NVIDIA driver: NVML Shared Library Not Found"


def test_real_pynvml_without_a_gpu_reports_instead_of_raising() -> None:
    report = read_gpus()  # nvidia-ml-py is installed; this machine has no driver
    assert report.available or "driver" in report.error or "NVML" in report.error
