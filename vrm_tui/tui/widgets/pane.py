"""A pane that redraws in place: the whole screen is laid out again only when the pane's
height changed.

`Static.update` lays out the whole screen by default, and laying out measures every pane by
rendering it: at one update per poll that was a third of the TUI's CPU at 300 req/s. The
panes' content is lines of text and no-wrap tables, whose height is known without rendering;
anything else (a line wider than the pane, which wraps) is measured by rendering this pane
alone.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

Shape = tuple[int, object] | None
"""(rows, what was drawn) when known without rendering; None: lay it out."""


def rows(content: RenderableType, width: int) -> int | None:
    """How many rows `content` takes at `width`, or None when only rendering can tell."""
    if isinstance(content, str):
        content = Text(content)
    if isinstance(content, Text):
        lines = content.plain.split("\n")
        if any(cell_len(line) > width for line in lines):
            return None  # it wraps
        return len(lines)
    if isinstance(content, Group):
        counts = [rows(part, width) for part in content.renderables]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)
    if isinstance(content, Table):
        simple = (content.box is None and not content.title and not content.caption
                  and not content.show_footer and all(c.no_wrap for c in content.columns))
        return content.row_count + int(content.show_header) if simple else None
    return None


def drawn(content: RenderableType) -> object:
    """What `content` shows, comparable for text (None for anything else: always redrawn)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Text):
        return (content.plain, tuple(content.spans), str(content.style), content.justify)
    if isinstance(content, Group):
        parts = [drawn(part) for part in content.renderables]
        return None if any(p is None for p in parts) else tuple(parts)
    if isinstance(content, Table):
        if content.title or content.caption or content.row_styles \
                or any(row.style for row in content.rows) \
                or any(column.style or column.header_style for column in content.columns):
            return None  # drawn by more than its cells: always redrawn
        cells = [(column.header, column.justify, column.no_wrap,
                  tuple(drawn(cell) for cell in column.cells)) for column in content.columns]
        known = all(drawn(c[0]) is not None and None not in c[3] for c in cells)
        return (content.show_header, content.expand, tuple(cells)) if known else None
    return None


class Pane(Static):
    """A Static whose `show` skips unchanged content and re-lays out only on a new height."""

    _rows: int | None = None
    _width = 0  # the content width `_rows` was counted at
    _drawn: object = None

    def show(self, content: RenderableType) -> None:
        width = self.content_size.width
        if width != self._width:
            self._rows, self._width = None, width  # heights must be counted again
        shown = drawn(content)
        if shown is not None and shown == self._drawn and (self._rows is not None or not width):
            return
        height = rows(content, width) if width else None
        if height is None and width:
            # It wraps: this pane alone is rendered to measure it, not the whole screen (a
            # line of the latency pane wrapping at 120 columns laid out the screen every
            # second at 3,000 req/s).
            self.update(content, layout=False)
            height = self.get_content_height(self.size, self.app.size, width)
            if height != self._rows:
                self.refresh(layout=True)
        else:
            self.update(content, layout=height is None or height != self._rows)
        self._rows, self._drawn = height, shown
