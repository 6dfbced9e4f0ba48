"""Fleet pane (fleet mode only): one row per live host, as its agent reports it to etcd.

Every state is a word (held, isolated, lagging, following; each backend up or DOWN), colour
only repeats it. An unreadable etcd replaces the rows with why: rows from an older read
would claim a fleet state nobody can vouch for."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vrm_tui.tui.widgets.common import ms
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import FleetDesired, FleetView, HostReport

MODE_STYLE = {"following": ("●", "green"), "lagging": ("◔", "yellow"),
              "held": ("■", "yellow bold"), "isolated": ("✗", "red"), "stopped": ("–", "dim")}


def host_mode(report: HostReport, desired: FleetDesired | None) -> str:
    """held / isolated / stopped as the agent says; following but behind the desired
    generation is `lagging` (it has not applied the newest split yet)."""
    if report.mode == "following" and desired is not None \
            and report.generation < desired.generation:
        return "lagging"
    return report.mode


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


class FleetPane(Pane):
    def on_mount(self) -> None:
        self.border_title = "Fleet"
        self._view: FleetView | None = None
        self.show(Text("waiting for etcd…", style="dim"))

    def show_view(self, view: FleetView) -> None:
        self._view = view
        self.refresh_view()

    def show_error(self, error: str) -> None:
        """The poll itself failed (not etcd): no rows, the reason."""
        self._view = None
        self.show(Text(f"✗ fleet unreadable: {error}", style="red"))

    def modes(self) -> dict[str, str]:
        """Host -> its mode word, as shown (empty while etcd is unreachable)."""
        view = self._view
        if view is None or view.unreachable:
            return {}
        return {host: host_mode(r, view.desired) for host, r in view.hosts.items()}

    def refresh_view(self) -> None:
        view = self._view
        if view is None:
            return
        self.border_title = f"Fleet {view.fleet}"
        local = view.local
        mine = "held" if view.held_by else (local.mode if local else "no agent")
        here = Text(f"this host ({view.host}): {mine}"
                    + (f" by {view.held_by}" if view.held_by else ""), style="dim")
        if view.unreachable:
            why = view.unreachable.removeprefix("etcd unreachable").strip(" ()")
            self.show(Group(Text(f"✗ etcd unreachable: {why}", style="red bold"), here))
            return
        desired = view.desired
        head = Text(f"desired: rust {desired.rust}% generation {desired.generation} "
                    f"({desired.action} by {desired.by})" if desired else
                    "desired: none yet (vrm fleet deploy)")
        table = Table(box=None, expand=True, pad_edge=False)
        for name, justify in (("host", "left"), ("mode", "left"), ("gen", "right"),
                              ("rust/ts", "right"), ("health", "left"), ("rust err", "right"),
                              ("rust p95", "right"), ("VRAM GB", "right")):
            table.add_column(name, no_wrap=True, justify=justify)  # type: ignore[arg-type]
        problems = []
        for host, report in sorted(view.hosts.items()):
            mode = host_mode(report, view.desired)
            symbol, style = MODE_STYLE.get(mode, ("?", ""))
            split = "?" if report.rust is None else f"{report.rust}/{100 - report.rust}"
            health = " ".join(f"{b.replace('typescript', 'ts')} {'up' if ok else 'DOWN'}"
                              for b, ok in sorted(report.health.items()))
            rust = report.traffic.get("rust", {})
            vram = "-" if report.vram_used_gb is None else \
                f"{report.vram_used_gb:.1f}/{report.vram_total_gb or 0:.0f}"
            table.add_row(host, Text(f"{symbol} {mode}", style=style), str(report.generation),
                          split, health or "-", _rate(rust.get("error_rate")),
                          ms(rust.get("p95_ms")), vram)
            if report.error:
                problems.append(Text(f"{host}: {report.error}", style="red"))
            if mode == "held" and report.held_by:
                problems.append(Text(f"{host}: held by {report.held_by} (vrm fleet rejoin)",
                                     style="yellow"))
        if not view.hosts:
            table.add_row(Text("no live host", style="dim"), "", "", "", "", "", "", "")
        self.show(Group(head, table, *problems, here))
