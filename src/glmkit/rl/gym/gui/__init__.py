"""Generated interface screenshots for the GUI ladder: the app and its layout (:mod:`.app`), random
apps and action goals (:mod:`.generate`), and the trajectory's ``click`` tool (:mod:`.tool`)."""

from glmkit.rl.gym.gui.app import KIND_NAMES, Element, GuiApp, Widget
from glmkit.rl.gym.gui.generate import INFO_TABS, goal, random_app
from glmkit.rl.gym.gui.tool import ClickTool

__all__ = ["INFO_TABS", "KIND_NAMES", "ClickTool", "Element", "GuiApp", "Widget", "goal", "random_app"]
