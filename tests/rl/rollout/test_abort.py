"""Early abort by completed-group count and by time."""

from __future__ import annotations

import pytest

from glmkit.rl.rollout import EarlyAbort


def test_target_rounds_up_and_is_at_least_one() -> None:
    abort = EarlyAbort(0.9)
    assert [abort.target(n) for n in (0, 1, 2, 9, 10, 11, 32)] == [0, 1, 2, 9, 9, 10, 29]
    assert EarlyAbort(0.01).target(10) == 1
    assert EarlyAbort().target(7) == 7


def test_should_stop() -> None:
    abort = EarlyAbort(0.9, timeout_s=60)
    assert not abort.should_stop(8, 10, 59.0)
    assert abort.should_stop(9, 10, 1.0)
    assert abort.should_stop(1, 10, 60.0)  # time's up and a group is complete
    assert not abort.should_stop(0, 10, 1e9)  # never an empty batch by time alone


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"complete_fraction": 0.0}, r"complete_fraction must be in \(0, 1\], got 0.0"),
        ({"complete_fraction": 1.2}, r"complete_fraction must be in \(0, 1\], got 1.2"),
        ({"timeout_s": -1.0}, "timeout_s must be > 0 or None, got -1.0"),
    ],
)
def test_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EarlyAbort(**kwargs)
