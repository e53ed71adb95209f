"""The static check: topic.toml bans json.dumps for test_static_*; the student's aliased.py mentions it
(line 1), so those tests fail at collection's verdict, without running. Run with ../test_guarded.py."""
from lab.impl import Topic

impl = Topic("inf93")
RAN = []


def test_static_fails_a_mention_without_running():
    RAN.append(1)
    raise AssertionError("ran: the static check should have failed this test before it ran")


def test_passes_outside_the_bans_patterns():
    assert impl.student.calls_dumps([1]) == "[1]" and not RAN
