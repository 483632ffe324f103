"""The built-in task categories, offline and procedurally generated, each with exact verifiers.

========================  ===================================================  =====================================
category                  task                                                 verifiers (eval metrics)
========================  ===================================================  =====================================
``counting``              count shapes of a kind / colour                      ``numeric`` (exact)
``grounding``             0-1000 box of the named shape                        ``grounding`` (reward: IoU)
``pointing``              0-1000 point on the named shape                      ``pointing`` (in the box)
``ocr``                   read a word, code or sentence                        ``exact_match`` + ``ocr_ned``
``chart_values``          a bar's value, the largest, the smallest             ``numeric``
``arithmetic``            sums and differences of chart values                 ``numeric``
``ui2code``               HTML of a page from its screenshot                   ``design2code`` (needs Chromium)
``gui_perception``        title, open tab, checkbox state, kind, field text    ``normalized_match``
``gui_grounding``         0-1000 box of a named GUI element                    ``grounding`` (reward: IoU)
``gui_action``            the click that achieves a goal                       ``pointing``
``gui_trajectory``        multi-step: click through tabs to find a code        ``exact_match``
``small_text``            multi-step: crop_image to read tiny text             ``exact_match``
========================  ===================================================  =====================================
"""

from glmkit.rl.gym.categories.arithmetic import Arithmetic
from glmkit.rl.gym.categories.charts import ChartValues
from glmkit.rl.gym.categories.counting import Counting
from glmkit.rl.gym.categories.grounding import Grounding
from glmkit.rl.gym.categories.gui_ladder import GuiAction, GuiGrounding, GuiPerception, GuiTrajectory
from glmkit.rl.gym.categories.ocr import OCR
from glmkit.rl.gym.categories.pointing import Pointing
from glmkit.rl.gym.categories.small_text import SmallText
from glmkit.rl.gym.categories.ui2code import UI2Code

__all__ = [
    "OCR",
    "Arithmetic",
    "ChartValues",
    "Counting",
    "Grounding",
    "GuiAction",
    "GuiGrounding",
    "GuiPerception",
    "GuiTrajectory",
    "Pointing",
    "SmallText",
    "UI2Code",
]
