"""The generated applications: exact layout, clicks that change the state, the ``click`` tool through
the agent's turn logic, and a trajectory that only clicking solves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glmkit.agent.turns import initial_messages, take_turn
from glmkit.rl.gym import TaskEnvironment, build_reward_system, run_episode
from glmkit.rl.gym.gui import ClickTool, GuiApp, Widget, goal, random_app
from glmkit.tools.base import ToolContext
from tests.rl.gym.conftest import make
from tests.rl.gym.policies import ClickingPolicy, hermes_call


def app() -> GuiApp:
    return GuiApp(
        "Settings",
        ["General", "About"],
        {
            "General": [
                Widget("field", "Email", value="river"),
                Widget("checkbox", "Dark mode"),
                Widget("button", "Save"),
                Widget("button", "Cancel"),
            ],
            "About": [
                Widget("button", "Show licence key", reveals=True),
                Widget("text", "Licence key", "K7T-9ZB", hidden=True),
            ],
        },
    )


def test_elements_have_disjoint_boxes_inside_the_screen() -> None:
    for seed in range(20):
        gui = random_app(np.random.default_rng(seed))
        boxes = [e.box for e in gui.elements()]
        for i, a in enumerate(boxes):
            assert 0 <= a[0] < a[2] <= gui.size[0] and 0 <= a[1] < a[3] <= gui.size[1]
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (seed, a, b)
        for element in gui.elements():  # each element's centre hits that element
            assert gui.element_at(*element.center) == element


def test_clicks_open_tabs_toggle_checkboxes_and_reveal() -> None:
    gui = app()
    assert gui.click(*gui.element("Dark mode").center) == "ticked the 'Dark mode' checkbox"
    assert gui.element("Dark mode").checked
    assert gui.click(2, 2) == "nothing there"
    assert "K7T-9ZB" not in gui.visible_text()
    gui.click(*gui.element("About").center)
    assert gui.active == "About" and "K7T-9ZB" not in gui.visible_text()
    gui.click(*gui.element("Show licence key").center)
    assert "K7T-9ZB" in gui.visible_text()
    restored = GuiApp.from_dict(gui.to_dict())
    assert restored.to_dict() == gui.to_dict()
    assert np.array_equal(np.asarray(restored.render()), np.asarray(gui.render()))


def test_bad_apps_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"labels must be unique .* \['Save'\]"):
        GuiApp("t", ["A"], {"A": [Widget("button", "Save"), Widget("button", "Save")]})
    with pytest.raises(ValueError, match=r"tabs without a page \['B'\]"):
        GuiApp("t", ["A", "B"], {"A": []})
    with pytest.raises(ValueError, match="unknown widget kind 'slider'"):
        Widget("slider", "Volume")
    with pytest.raises(KeyError, match="no element labelled 'Nope'"):
        app().element("Nope")


def test_the_click_tool_runs_through_take_turn_and_returns_the_new_screen() -> None:
    gui = app()
    context = ToolContext()
    initial_messages("Find the licence key.", [gui.render()], context)
    tools = {"click": ClickTool(gui)}
    x, y = gui.element("About").center
    turn = take_turn(hermes_call("click", {"point": [x * 2, y * 2]}), "hermes", tools, context)
    assert turn.calls[0].result.data["element"] == "About" and gui.active == "About"
    assert "opened the 'About' tab" in turn.observations[0]["content"]
    assert np.array_equal(np.asarray(turn.new_images["img_1"]), np.asarray(gui.render()))
    bad = take_turn(hermes_call("click", {"point": [1200, 5]}), "hermes", tools, context)
    assert bad.tool_errors == 1 and "out of range" in bad.observations[0]["content"]


def test_goals_name_what_the_user_wants() -> None:
    gui = app()
    assert goal(gui, gui.element("Save")) == "save your changes"
    assert goal(gui, gui.element("Dark mode")) == "turn on the 'Dark mode' option"
    assert goal(gui, gui.element("About")) == "open the About tab"


@pytest.mark.parametrize("index", range(4))
def test_the_trajectory_is_solved_by_clicking_and_not_by_guessing(index: int, tmp_path: Path) -> None:
    category = make("gui_trajectory", tmp_path)
    env = TaskEnvironment(category, reward=build_reward_system([category]))
    sample = category.sample(index)
    assert sample.answer not in " ".join(GuiApp.from_dict(sample.metadata["app"]).visible_text())

    policy = ClickingPolicy(sample)
    episode = run_episode(env, index, policy)
    clicks = 2 if sample.metadata["reveal"] else 1
    assert episode.reward == 1.0 and episode.tool_calls == {"click": clicks} and episode.turns == clicks + 1
    assert episode.sample.source == "gui_trajectory"

    guess = run_episode(env, index, ClickingPolicy(sample, answer_early=True))
    assert guess.reward == 0.0 and guess.turns == 1


@pytest.mark.parametrize("index", range(4))
def test_the_oracle_trajectory_clicks_through_and_earns_full_marks(index: int, tmp_path: Path) -> None:
    category = make("gui_trajectory", tmp_path)
    env = TaskEnvironment(category, reward=build_reward_system([category]))
    sample = category.sample(index)
    replies = iter(category.oracle_trajectory(sample))
    episode = run_episode(env, sample, lambda messages: next(replies))
    clicks = 2 if sample.metadata["reveal"] else 1
    assert episode.reward == 1.0 and episode.tool_calls == {"click": clicks} and episode.turns == clicks + 1
    assert next(replies, None) is None  # every reply was used
