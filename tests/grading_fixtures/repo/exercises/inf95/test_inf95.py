import fakelab


def test_double():
    assert fakelab.load("inf95").double(4) == 8


def test_triple():
    assert fakelab.load("inf95").triple(4) == 12
