"""``click``: the GUI trajectory's one action, a tool that clicks the app and returns its new screen.

Not registered in ``tools``: it acts on one episode's :class:`~glmkit.rl.gym.gui.app.GuiApp`, so
the category builds a fresh one per episode (:meth:`GuiTrajectory.tools`). Points are read with
the tool chain's coordinate helpers (0-1000 by default, or pixels), like every other tool.
"""

from __future__ import annotations

from typing import Any

from glmkit.rl.gym.gui.app import GuiApp
from glmkit.tools.base import Tool, ToolContext, ToolResult, object_schema
from glmkit.tools.coords import COORD_SPACE_SCHEMA, POINT_SCHEMA, point_to_pixels


class ClickTool(Tool):
    """Click a point of the application's screen; the result is the new screenshot."""

    name = "click"
    description = (
        "Click a point on the application's screen (a tab, a button, a checkbox, a field, a link). "
        "Returns a screenshot of the screen after the click. Coordinates are integers 0-1000 relative "
        'to the screen width/height unless coord_space is "pixels".'
    )
    parameters = object_schema(
        {"point": POINT_SCHEMA, "coord_space": COORD_SPACE_SCHEMA}, required=("point",)
    )

    def __init__(self, app: GuiApp) -> None:
        if not isinstance(app, GuiApp):
            raise TypeError(f"ClickTool needs a GuiApp, got {type(app).__name__}")
        self.app = app

    def run(
        self, context: ToolContext, point: list[float], coord_space: str = "norm1000", **_: Any
    ) -> ToolResult:
        """Click ``point`` and return the screenshot after it."""
        x, y = point_to_pixels(point, self.app.size, coord_space)  # type: ignore[arg-type]
        hit = self.app.element_at(x, y)
        what = self.app.click(x, y)
        return ToolResult(
            text=f"Clicked {list(point)} ({coord_space}): {what}.",
            images=[self.app.render()],
            data={"pixel": [x, y], "element": hit.label if hit else None, "tab": self.app.active},
        )
