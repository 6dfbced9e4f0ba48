"""GPU memory and utilisation from NVML, with each process's memory mapped to a backend.

NVML is reached only through the `nvml` module handed in (nvidia-ml-py's `pynvml` by
default): that is the one boundary tests replace, since no GPU runs here. Without a driver
the report says so, and the VRAM pane falls back to the backends' own
`vision_manager_vram_used_gb`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from vrm_tui.system.procs import parent_pid

GB = 1024 ** 3


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_gb: float | None
    owner: str | None  # "rust", "typescript", or None for a process vrm does not know


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    used_gb: float
    total_gb: float
    utilization_pct: int | None
    processes: tuple[GpuProcess, ...] = ()

    def used_by(self, owner: str) -> float:
        return sum(p.used_gb or 0.0 for p in self.processes if p.owner == owner)


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[Gpu, ...] = ()
    error: str = ""  # why there is no reading (no driver, NVML failed)
    driver: str = ""

    @property
    def available(self) -> bool:
        return not self.error


@dataclass
class Owners:
    """Which backend a GPU process belongs to: a backend's pid, or any descendant of it."""

    roots: Mapping[int, str] = field(default_factory=dict)

    def owner_of(self, pid: int) -> str | None:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in self.roots:
                return self.roots[pid]
            parent = parent_pid(pid)
            if parent is None:
                return None
            pid, seen = parent, seen + 1
        return None


def _load() -> ModuleType:
    return importlib.import_module("pynvml")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus(owners: Owners | None = None, nvml: ModuleType | None = None) -> GpuReport:
    """One reading of every GPU; never raises."""
    owners = owners or Owners()
    try:
        nvml = nvml or _load()
    except ImportError:
        return GpuReport(error="NVML not available (nvidia-ml-py is not installed)")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError and its many subclasses, or a missing library
        return GpuReport(error=f"no NVIDIA driver: {_text(exc) or type(exc).__name__}")
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            utilization: int | None = None
            with contextlib.suppress(Exception):  # not supported on every GPU / MIG slice
                utilization = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            processes = []
            with contextlib.suppress(Exception):
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    used = getattr(proc, "usedGpuMemory", None)
                    processes.append(GpuProcess(int(proc.pid),
                                                used / GB if isinstance(used, int) else None,
                                                owners.owner_of(int(proc.pid))))
            gpus.append(Gpu(index, _text(nvml.nvmlDeviceGetName(handle)), memory.used / GB,
                            memory.total / GB, utilization, tuple(processes)))
        return GpuReport(tuple(gpus), driver=driver)
    except Exception as exc:
        return GpuReport(error=f"NVML failed: {_text(exc) or type(exc).__name__}")
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
