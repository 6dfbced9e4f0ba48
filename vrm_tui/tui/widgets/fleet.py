"""Fleet pane (fleet mode only): one row per live host, as its agent reports it to etcd.

Every state is a word (held, isolated, lagging, following; each backend up or DOWN), colour
only repeats it. An unreadable etcd replaces the rows with why: rows from an older read
would claim a fleet state nobody can vouch for.

Focused (tab), up/down select a host and `h` rolls that host back after a question that says
whether it is this host (locally, no etcd) or a remote one (its hold key in etcd). The
words for the fleet's rollback (`r` in fleet mode) on the action line are here too."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType

from vrm_tui.console import Console
from vrm_tui.tui import actions
from vrm_tui.tui.screens.confirm import ConfirmScreen
from vrm_tui.tui.widgets.common import ms
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import FleetDesired, FleetRollback, FleetView, HostReport, HostRollback

if TYPE_CHECKING:
    from vrm_tui.tui.app import VrmApp

Progress = Callable[[str], None]

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


def _verified(view: FleetRollback) -> str:
    fleet = view.fleet
    done = sorted(fleet.confirmed, key=lambda c: c.seen_ms) if fleet else []
    return ", ".join(f"{c.host} +{c.seen_ms:.0f} ms" for c in done)


def _here(view: FleetRollback) -> str:
    if view.local is None:
        return f"this host ({view.host}) FAILED: {view.local_error}"
    return f"this host ({view.host}) rust 0 verified in {view.local.duration_ms:.0f} ms"


def rollback_progress(view: FleetRollback) -> str:
    """The action line while the fleet's rollback runs: this host, then who still confirms."""
    fleet = view.fleet
    if fleet is None:
        return f"… fleet rollback: {_here(view)}; writing rust 0 for the fleet (etcd)…"
    verified = _verified(view)
    return (f"… fleet rollback (generation {fleet.desired.generation}): {_here(view)}; "
            f"confirming {', '.join(fleet.waiting)}" + (f" · verified {verified}"
                                                         if verified else ""))


def rollback_result(view: FleetRollback) -> tuple[bool, str]:
    """(ok, the action line's words) once the fleet's rollback ended: each host's verified
    time, or the hosts that did not confirm (the rollback stays in force for them), or that
    the fleet could not be reached (this host rolled back and held all the same)."""
    fleet = view.fleet
    if fleet is None:
        held = " and held until `vrm fleet rejoin`" if view.local is not None else ""
        return False, (f"{_here(view)}{held}; the fleet could not be reached: "
                       f"{view.unreachable}")
    verified = _verified(view) or "none"
    gen = f"generation {fleet.desired.generation}"
    local = "" if view.local is not None else f"; {_here(view)}"
    gone = f"; gone meanwhile: {', '.join(fleet.gone)}" if fleet.gone else ""
    if fleet.missing:
        return False, (f"({gen}): not confirmed within the timeout: "
                       f"{', '.join(fleet.missing)} (the rollback stays in force for them); "
                       f"verified {verified}{local}{gone}")
    return view.ok, f"→ rust 0 on every live host ({gen}): {verified}{local}{gone}"


def fleet_rollback(console: Console) -> Callable[[Progress], tuple[bool, str]]:
    """`r` in fleet mode, for the app's change thread (workers.Changes.report)."""

    def run(progress: Progress) -> tuple[bool, str]:
        view = console.fleet_rollback(
            lambda partial: None if partial.done else progress(rollback_progress(partial)))
        return rollback_result(view)

    return run


def host_rollback_result(view: HostRollback) -> tuple[bool, str]:
    if not view.remote:
        assert view.local is not None
        return True, (f"→ rust 0 on this host ({view.host}), generation "
                      f"{view.local.generation} verified; held until `vrm fleet rejoin`")
    if view.seen_ms is None:
        return False, (f"{view.host} did not confirm within the timeout (its hold stays in "
                       "force: its agent rolls it back when it can)")
    return True, (f"→ {view.host} held at rust 0, verified +{view.seen_ms:.0f} ms (`vrm fleet "
                  f"rejoin` on {view.host} releases it)")


class FleetPane(Pane, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "select(-1)", "Host above", show=False),
        Binding("down,j", "select(1)", "Host below", show=False),
        *(actions.binding(a) for a in actions.PANE_ACTIONS),
    ]

    def on_mount(self) -> None:
        self.border_title = "Fleet"
        self._view: FleetView | None = None
        self.selected: str | None = None
        self.show(Text("waiting for etcd…", style="dim"))

    @property
    def vrm_app(self) -> VrmApp:
        return cast("VrmApp", self.app)

    def hosts(self) -> list[str]:
        view = self._view
        return [] if view is None or view.unreachable else sorted(view.hosts)

    def on_focus(self) -> None:
        hosts = self.hosts()
        if self.selected not in hosts and hosts:  # this host first, where it reports
            here = self._view.host if self._view else ""
            self.selected = here if here in hosts else hosts[0]
        self.refresh_view()

    def on_blur(self) -> None:
        self.refresh_view()

    def action_select(self, step: int) -> None:
        hosts = self.hosts()
        if not hosts:
            return
        index = hosts.index(self.selected) if self.selected in hosts else -step
        self.selected = hosts[max(0, min(len(hosts) - 1, index + step))]
        self.refresh_view()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A refused key (read-only) is left out of the footer, like the dashboard's."""
        return not self.vrm_app.refusal(action)

    def action_host_rollback(self) -> None:
        """Ask, saying whether the selected host is this one (rolled back here, no etcd) or
        a remote one (held through etcd), then roll it back in the app's change thread."""
        app, view, host = self.vrm_app, self._view, self.selected
        if reason := app.refusal("host_rollback"):
            app.notify(reason, title="read-only", severity="warning", markup=False)
            return
        if view is None or host not in self.hosts():
            app.notify("no host selected (etcd unreadable, or no live host)",
                       severity="warning", markup=False)
            return
        if host == view.host:
            question = f"Roll back THIS host ({host})?"
            detail = ("Here, now, through this host's nginx: no etcd needed. The rest of the "
                      "fleet keeps its split; this host is held at rust 0 until `vrm fleet "
                      "rejoin` here.")
        else:
            question = f"Roll back {host}, a REMOTE host?"
            detail = (f"Through etcd: {host}'s agent rolls it back and holds it at rust 0 "
                      f"until `vrm fleet rejoin` on {host}. The rest of the fleet keeps its "
                      "split.")

        def roll_back(progress: Progress) -> tuple[bool, str]:
            progress(f"… rolling back {host}" + ("" if host == view.host else
                                                 " (its hold written to etcd)"))
            return host_rollback_result(app.vrm.fleet_host_rollback(host))

        def answered(yes: bool | None) -> None:
            if yes:
                app.changes.report(f"rollback of {host}", roll_back)

        app.push_screen(ConfirmScreen(question, detail), answered)

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
            shown = f"▸ {host}" if self.has_focus and host == self.selected else host
            split = "?" if report.rust is None else f"{report.rust}/{100 - report.rust}"
            health = " ".join(f"{b.replace('typescript', 'ts')} {'up' if ok else 'DOWN'}"
                              for b, ok in sorted(report.health.items()))
            rust = report.traffic.get("rust", {})
            vram = "-" if report.vram_used_gb is None else \
                f"{report.vram_used_gb:.1f}/{report.vram_total_gb or 0:.0f}"
            table.add_row(shown, Text(f"{symbol} {mode}", style=style), str(report.generation),
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
