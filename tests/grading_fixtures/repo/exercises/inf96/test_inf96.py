import pytest

import fakelab

toy = fakelab.load("inf96")


def test_square():
    assert toy.square(3) == 9


def test_cube():
    assert toy.cube(2) == 8


@pytest.mark.speed
def test_square_speed(record_property):
    assert toy.square(5) == 25
    record_property("speed", {"ratio": 3.0, "threshold": 2.0, "solution_s": 1.0, "baseline_s": 3.0})
