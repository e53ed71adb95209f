import fakelab

toy = fakelab.load("inf99")


def test_first_passes():
    assert toy.first() == 1


def test_crash_prone():
    assert toy.crash_prone() == 2


def test_after_crash():
    assert toy.after() == 3
