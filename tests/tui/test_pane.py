"""Panes redraw in place: laid out again only when their height may change, never shown at a
stale height or with stale text."""

from __future__ import annotations

import traceback

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region

from tests.support import rendered
from vrm_tui.tui.widgets.pane import Pane, drawn, rows


def _table(*cells: str, wrap: bool = False, header: bool = True) -> Table:
    table = Table(box=None, show_header=header)
    table.add_column("name", no_wrap=not wrap)
    for cell in cells:
        table.add_row(cell)
    return table


def test_rows_known_without_rendering() -> None:
    assert rows(Text("a\nb\nc"), 10) == 3
    assert rows("plain", 10) == 1
    assert rows(Group(Text("a"), Text("b\nc"), _table("x", "y")), 10) == 6  # 3 + header + 2
    assert rows(_table("x", header=False), 10) == 1


def test_rows_unknown_when_only_rendering_can_tell() -> None:
    assert rows(Text("x" * 11), 10) is None, "a line wider than the pane wraps"
    assert rows(Group(Text("a"), Text("x" * 30)), 10) is None
    assert rows(_table("x", wrap=True), 10) is None
    assert rows(Table("a", "b"), 10) is None, "a table with borders"


def test_drawn_tells_changed_text_and_tables_apart() -> None:
    assert drawn(Text("a", style="red")) == drawn(Text("a", style="red"))
    assert drawn(Text("a", style="red")) != drawn(Text("a", style="green"))
    coloured = Text("ab")
    coloured.stylize("bold", 0, 1)
    assert drawn(coloured) != drawn(Text("ab"))
    assert drawn(Group(_table("x"), Text("y"))) == drawn(Group(_table("x"), Text("y")))
    assert drawn(Group(_table("x"), Text("y"))) != drawn(Group(_table("z"), Text("y")))


class _One(App[None]):
    CSS = "Pane { height: auto; border: round white; }"

    def compose(self) -> ComposeResult:
        yield Pane(id="pane")


async def test_a_pane_grows_shrinks_wraps_and_changes_text() -> None:
    app = _One()
    async with app.run_test(size=(40, 20)) as pilot:
        pane = app.query_one(Pane)
        await pilot.pause()
        cases: list[tuple[Text | Group, int, str, str]] = [  # words no SVG markup contains
            (Text("zzone\nzztwo"), 2, "zztwo", ""),
            (Text("zzone\nzztwo\nzzthree\nzzfour"), 4, "zzfour", ""),  # taller: laid out
            (Text("zzfive\nzzsix\nzzseven\nzzeight"), 4, "zzeight", "zzfour"),  # in place
            (Text("zznine"), 1, "zznine", "zzeight"),  # shorter
            (Text("zzword " * 20), 4, "zzword", "zznine"),  # wraps: rendered to measure
            (Group(_table("zzalpha", "zzbeta"), Text("zzgamma")), 4, "zzgamma", "zzword"),
        ]
        for content, height, text, gone in cases:
            pane.show(content)
            await pilot.pause()
            assert pane.content_size.height == height, (content, pane.content_size)
            assert text in rendered(pane)
            screen = app.export_screenshot()  # what the terminal shows, not the content
            assert text in screen and (not gone or gone not in screen), (text, gone)


async def test_a_new_height_is_laid_out_once_and_a_new_width_counts_rows_again() -> None:
    """Only a new height lays out the screen: not the resize that the new height causes (it
    did, a second time per change), nor wrapped text of the same height (every second, the
    latency pane's wrapped line at 3,000 req/s)."""
    app = _One()
    async with app.run_test(size=(40, 20)) as pilot:
        pane = app.query_one(Pane)
        await pilot.pause()
        layouts: list[int] = []
        refresh = pane.refresh

        def counted(*regions: Region, layout: bool = False, **options: bool) -> Pane:
            callers = traceback.extract_stack(limit=4)
            if layout and any(c.filename.endswith("widgets/pane.py") for c in callers):
                layouts.append(pane.content_size.width)  # asked by `show`, not by a layout
            return refresh(*regions, layout=layout, **options)

        setattr(pane, "refresh", counted)  # noqa: B010 (an instance's method, for this test)
        cases = [("zzone\nzztwo\nzzthree", 3), ("zzfour", 1), ("zzfive", 1), ("zzsix", 1),
                 ("zzword " * 8, 2), ("zzdrow " * 8, 2)]  # 56 cells in 38: two rows
        for text, height in cases:
            pane.show(Text(text))
            await pilot.pause()
            assert pane.content_size.height == height, text
        assert layouts == [38, 38, 38], "each new height once, and nothing else"
        await pilot.resize_terminal(20, 20)
        await pilot.pause()
        pane.show(Text("zzseven " * 4))  # 31 cells in 18: two rows at the new width
        await pilot.pause()
        assert pane.content_size.height == 2 and layouts[-1] == 18
