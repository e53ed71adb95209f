import pytest

import fakelab

toy = fakelab.load("inf97")


def test_scale_doubles():
    assert toy.scale(3, 2) == 6


def test_shift_moves():
    try:
        got = toy.shift(3, 2)
    except NotImplementedError as exc:     # a harness that wraps the stub's error
        raise RuntimeError("shift could not run") from exc
    assert got == 5


@pytest.mark.speed
def test_scale_speed(record_property):
    assert toy.scale(5, 5) == 25
    record_property("speed", {"ratio": 3.0, "threshold": 2.0, "solution_s": 1.0, "baseline_s": 3.0})
