"""The pytest side of the lab's anti-cheat checks, registered by the root conftest.

- `@pytest.mark.bans(*targets, reason=...)` (or `pytestmark = ...` for a whole file) bans library
  shortcuts from the student's code while the test runs (`lab.guard`); wrappers are installed after
  collection for every target the collected tests ban;
- a test during which the student's code hit a ban fails, even when the code caught the BannedError;
- after each test's teardown the timing seal (`lab.seal`) is verified: a patched clock, `lab.timing` or
  guard function fails that test (a teardown error) and is put back before the next test.
"""
from __future__ import annotations

import sys

import pytest

from lab import guard
from lab.seal import Seal


class TamperError(AssertionError):
    """Something the lab's timing or guard relies on was changed while a test ran."""


def _bans(item: pytest.Item) -> tuple[list[str], str]:
    targets, reasons = [], []
    for mark in item.iter_markers("bans"):
        bad = [t for t in mark.args if not isinstance(t, str) or not t]
        if bad or set(mark.kwargs) - {"reason"}:
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.bans('dotted.name', ..., reason='...'); "
                                    f"got args {mark.args!r}, kwargs {mark.kwargs!r}")
        targets += mark.args
        reasons += [mark.kwargs["reason"]] if mark.kwargs.get("reason") else []
    return list(dict.fromkeys(targets)), "; ".join(dict.fromkeys(reasons))


def _topic(item: pytest.Item) -> str:
    folder = item.path.parent.name
    return folder if folder.startswith("inf") else "this test"


class GuardPlugin:
    def __init__(self):
        self._seal = Seal()
        self._verify = self._seal.verify          # bound now: patching Seal.verify later changes nothing
        self._record = self._seal.record
        self._active: dict[str, tuple] = {}
        import lab.timing  # noqa: F401 - loaded and sealed now, before any student module is imported
        self._record()

    def pytest_collection_modifyitems(self, items) -> None:
        wanted = [t for item in items for t in _bans(item)[0]]
        if wanted:
            guard.install(dict.fromkeys(wanted))

    def pytest_collection_finish(self) -> None:
        self._record()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        self._record()
        guard.take_violations()
        targets, reason = _bans(item)
        if targets:
            self._active[item.nodeid] = (guard.activate(targets, reason, _topic(item)),
                                         guard._state.calls, guard._state.modules)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when == "call" and item.nodeid in self._active:
            _, calls, modules = self._active[item.nodeid]
            if (guard._state.calls, guard._state.modules) != (calls, modules):
                guard._state.violations.append(f"{_topic(item)}: the test's bans were changed while it ran")
            guard.scan_student_modules()
            found = guard.take_violations()
            if found and not report.failed:
                report.outcome, report.longrepr = "failed", f"BannedError: {found[0]}"
        return report

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item):
        try:
            return (yield)
        finally:
            active = self._active.pop(item.nodeid, None)
            if active is not None:
                guard.restore(active[0])
            changed = self._verify()
            if changed:
                hardware = sys.modules.get("lab.hardware")      # peaks measured with a patched clock are void
                if hardware is not None and hasattr(hardware.peaks, "cache_clear"):
                    hardware.peaks.cache_clear()
                raise TamperError(f"{_topic(item)}: {'; '.join(changed)} during this test; its results are "
                                  "void (put back for the next test)")

    def pytest_unconfigure(self) -> None:
        guard.uninstall()
