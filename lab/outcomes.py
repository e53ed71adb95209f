"""Outcomes a test states on purpose: "not graded on this hardware", and "this input must be refused".

    not_graded("needs a CUDA GPU")        # skips; the grader shows "not graded on this hardware", not 0

    with raises(ValueError, because="max_len=17 cannot hold 20 tokens"):
        cache.update(0, k, v)

`not_graded` raises a pytest skip that carries its status (`grading_status = "not_graded"`, read with
`grading_status(error)`), which the grader's plugin records as `not_graded` (never by matching the
reason's text). It is for hardware only: a missing package is an error of the set-up, which a test
reports as a failure that names the package.

`raises` is `pytest.raises` with a reason: when the expected exception does not come, the failure says
which input should have been refused and why, and what happened instead (nothing, or another exception
with its message). A stub's `NotStarted` passes through untouched, so an unstarted topic still reads
"not started".
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

from lab.errors import not_started_in

NOT_GRADED = "not graded on this hardware"


NOT_GRADED_STATUS = "not_graded"


def not_graded(reason: str) -> None:
    """Skip the running test as "not graded on this hardware: <reason>" (e.g. "needs a CUDA GPU"): the
    grader counts its points as possible elsewhere, not as lost. (A plain pytest skip, shown as pytest
    shows every skip, with the status attached to the exception.)"""
    __tracebackhide__ = True
    skip = pytest.skip.Exception(f"{NOT_GRADED}: {reason}", allow_module_level=True)
    setattr(skip, "grading_status", NOT_GRADED_STATUS)     # read back by grading_status(error)
    raise skip


def grading_status(error: BaseException) -> str | None:
    """"not_graded" for the skip `not_graded` raises, else None."""
    return getattr(error, "grading_status", None)


@dataclass
class Raised:
    """What `raises` caught: `value` is the exception (None until the block has run)."""

    value: BaseException | None = None


def _first_line(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def raises(expected: type[BaseException] | tuple[type[BaseException], ...], *, because: str,
           match: str | None = None) -> Iterator[Raised]:
    """Assert that the block raises `expected` (a type or a tuple of types), whose message matches the
    regular expression `match` if given. `because` says what input should be refused and why; it is the
    first thing a student reads when the exception does not come."""
    __tracebackhide__ = True
    names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
    caught = Raised()
    try:
        yield caught
    except expected as error:
        if match is not None and not re.search(match, str(error)):
            raise AssertionError(f"expected {names} because {because}, with a message matching {match!r}; "
                                 f"the message was: {_first_line(error)}") from error
        caught.value = error
        return
    except (KeyboardInterrupt, SystemExit, pytest.skip.Exception, pytest.fail.Exception):
        raise
    except Exception as error:
        if not_started_in(error) is not None:
            raise                   # the stub: "not started", not a wrong exception
        raise AssertionError(f"expected {names} because {because}; instead it raised {_first_line(error)}"
                             ) from error
    raise AssertionError(f"expected {names} because {because}; nothing was raised (the input was accepted)")
