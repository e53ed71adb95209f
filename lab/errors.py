"""The lab's own exceptions: what a test, the grader and a student can tell apart by type, never by text.

`NotStarted` is what every stub raises (grading.tools.stubs writes `raise NotStarted("inf10: implement
KVCache.update")` into exercises/): a test that reaches it reports "not started", the grader scores the
test as not started, and the Triton interpreter's child process passes the kind back to its parent.
"""
from __future__ import annotations


class NotStarted(NotImplementedError):
    """A stub the student has not written yet. A NotImplementedError, so `except NotImplementedError`
    still catches it; the message names the topic and the function: "inf10: implement KVCache.update"."""


def not_started_in(error: BaseException | None) -> NotImplementedError | None:
    """The stub's error in `error`'s chain (causes, contexts, exception-group members), or None.

    A NotImplementedError of any kind counts: a student's stub is sometimes a module they wrote before
    the lab's stubs existed, and a NotStarted wrapped by a harness (`raise RuntimeError(...) from e`) still
    shows that the test never reached the student's code."""
    seen, todo = set(), [error]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NotImplementedError):
            return current
        todo += [current.__cause__, current.__context__, *(getattr(current, "exceptions", ()) or ())]
    return None
