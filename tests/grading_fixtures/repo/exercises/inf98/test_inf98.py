import pytest

import fakelab

toy = fakelab.load("inf98")


def test_add_matches_python():
    assert toy.add(2, 3) == 5, f"add(2, 3): expected 5, got {toy.add(2, 3)}"


def test_mul_matches_python():
    got = toy.mul(4, 5)
    assert got == 20, f"mul(4, 5): expected 20, got {got}"


@pytest.mark.parametrize("a, b", [(5, 3), (2, 7), (0, 0)])
def test_sub_matches_python(a, b):
    got = toy.sub(a, b)
    assert got == a - b, f"sub({a}, {b}): expected {a - b}, got {got}"


def test_wait_ready_returns():
    assert toy.wait_ready() is True


@pytest.mark.gpu
def test_add_on_gpu():
    assert toy.add(1, 1) == 2


@pytest.mark.speed
def test_add_speed(record_property):
    assert toy.add(40, 2) == 42
    ratio, threshold = 3.5, 2.0
    record_property("speed", {"what": "add vs a slow add", "ratio": ratio, "threshold": threshold, "candidate_s": 1.0,
                              "baseline_s": 3.5, "rounds": 15, "passed": True, "card": "Fake GPU",
                              "reference_ratio": 4.5})        # as lab.timing.compare records: 78% of 4.5x, silver
    assert ratio >= threshold, f"speed-up {ratio}x, required >= {threshold}x"


@pytest.mark.speed
def test_sub_speed(record_property):
    assert toy.sub(5, 3) == 2
    record_property("speed", {"what": "sub vs a slow sub", "ratio": 2.5, "threshold": 2.0, "candidate_s": 1.0,
                              "baseline_s": 2.5, "rounds": 15, "passed": True, "card": None, "reference_ratio": None})
