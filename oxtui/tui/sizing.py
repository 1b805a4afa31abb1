"""A scrollable widget's virtual size, set without laying the screen out again.

`widget.virtual_size = size` is a reactive with layout=True: every change lays the whole screen out and
re-renders every widget. For a widget whose own size does not follow its content (the log pane, the
grid between its height's steps), only its scrollbars depend on it, and updating them asks for a
layout when one appears or goes. This is what Textual's own resize does (Widget._size_updated with
layout=False).
"""

from __future__ import annotations

from textual.geometry import Size
from textual.widget import Widget


def set_virtual_size(widget: Widget, size: Size) -> None:
    if size == widget.virtual_size:
        return
    if not widget.is_mounted or not widget.size:
        widget.virtual_size = size          # before the first layout: that layout takes it
        return
    widget.set_reactive(Widget.virtual_size, size)
    widget._scroll_update(size)
