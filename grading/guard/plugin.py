"""The pytest side of the lab's anti-cheat checks, registered by the root conftest.

- Bans: each test gets its topic's bans (exercises/infNN/topic.toml, read for public and hidden tests
  alike; grading/topics.py), plus any legacy `@pytest.mark.bans(*targets, reason=...)` marker.
  - the static check (primary): at collection, the topic's student modules (the files of the
    implementation root for that topic) are scanned for mentions of the topic's banned targets
    (grading/guard/scan.py); a test whose bans are mentioned fails without running, with file and line;
  - the run-time check (grading/guard/runtime.py): wrappers on banned callables, a meta-path finder for
    banned modules, installed after collection; a test during which the student's code hit a ban fails,
    even when the code caught the BannedError.
- The timing seal (grading/guard/seal.py): after each test's teardown, a patched clock, `lab.timing` or
  guard function fails that test (a teardown error) and is put back before the next test.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from grading import topics
from grading.guard import runtime
from grading.guard.scan import banned_mentions, student_files
from grading.guard.seal import Seal
from lab.paths import topic_of


class TamperError(AssertionError):
    """Something the lab's timing or guard relies on was changed while a test ran."""


def base_name(item: pytest.Item) -> str:
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    cls = getattr(item, "cls", None)
    return f"{cls.__name__}.{name}" if cls is not None else name


def _marker_bans(item: pytest.Item) -> tuple[list[str], str]:
    """Legacy: `@pytest.mark.bans(...)` (a line marked `# TOPIC.TOML-BANS`, or a test's own narrower ban)."""
    targets: list[str] = []
    reasons: list[str] = []
    for mark in item.iter_markers("bans"):
        bad = [t for t in mark.args if not isinstance(t, str) or not t]
        if bad or set(mark.kwargs) - {"reason"}:
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.bans('dotted.name', ..., reason='...'); "
                                    f"got args {mark.args!r}, kwargs {mark.kwargs!r}")
        targets += mark.args
        reasons += [mark.kwargs["reason"]] if mark.kwargs.get("reason") else []
    return targets, "; ".join(dict.fromkeys(reasons))


def _topic(item: pytest.Item) -> str:
    return topic_of(item.path) or "this test"


class GuardPlugin:
    def __init__(self):
        self._seal = Seal()
        self._verify = self._seal.verify          # bound now: patching Seal.verify later changes nothing
        self._record = self._seal.record
        self._bans: dict[str, tuple[list[str], str]] = {}      # nodeid -> (targets, reason)
        self._static: dict[str, str] = {}                      # nodeid -> the static check's failure
        self._active: dict[str, tuple] = {}
        self._checked: set[Path] = set()                       # topic.toml files whose targets were checked
        import lab.timing  # noqa: F401 - loaded and sealed now, before any student module is imported
        self._record()

    def _topic_bans(self, item: pytest.Item) -> list[topics.Ban]:
        found = topics.for_test(item.path)
        if found is None:
            return []
        if found.path not in self._checked:
            topics.check_targets(found)
            self._checked.add(found.path)
        return [ban for ban in found.bans if ban.applies_to(base_name(item))]

    def pytest_collection_modifyitems(self, items) -> None:
        from lab.impl import root_folder
        runtime.set_roots()
        try:
            root = root_folder()
        except ValueError:
            root = None
        scans: dict[tuple[str, tuple[topics.Ban, ...]], str | None] = {}
        for item in items:
            try:
                bans = self._topic_bans(item)
            except topics.TopicError as exc:
                raise pytest.UsageError(str(exc)) from None
            topic = topic_of(item.path)
            if bans and root is not None and topic is not None:
                key = (topic, tuple(bans))
                if key not in scans:
                    scans[key] = self._scan(root / topic, bans, topic)
                mention = scans[key]
                if mention:
                    self._static[item.nodeid] = mention
            legacy, legacy_reason = _marker_bans(item)
            targets = list(dict.fromkeys([t for ban in bans for t in ban.targets] + legacy))
            reasons = "; ".join(dict.fromkeys(r for r in [ban.reason for ban in bans] + [legacy_reason] if r))
            if targets:
                self._bans[item.nodeid] = (targets, reasons)
        wanted = [t for targets, _ in self._bans.values() for t in targets]
        if wanted:
            runtime.install(dict.fromkeys(wanted))

    @staticmethod
    def _scan(folder: Path, bans: list[topics.Ban], topic: str) -> str | None:
        """The static check: the first mention of a banned target in the topic's student modules."""
        reason_of: dict[str, str | None] = {}
        for ban in bans:
            for target in ban.targets:
                reason_of.setdefault(target, ban.reason)
        for path in student_files(folder):
            hits = banned_mentions(path, list(reason_of))
            if hits:
                line, name, target = hits[0]
                what = f"mentions {name}" if name == target else f"mentions {name}, under {target}"
                return f"{topic}: your code may not use {target}: {runtime._shown(str(path))} line {line} {what}; " \
                       f"{reason_of[target]}"
        return None

    def pytest_collection_finish(self) -> None:
        self._record()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        self._record()
        runtime.take_violations()
        if item.nodeid in self._bans:
            targets, reason = self._bans[item.nodeid]
            self._active[item.nodeid] = (runtime.activate(targets, reason, _topic(item)), runtime.active())
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item) -> None:
        __tracebackhide__ = True
        static = self._static.get(item.nodeid)
        if static is not None:              # the test does not run: its topic's code mentions a banned target
            raise runtime.BannedError(static)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when == "call" and item.nodeid in self._active:
            _, bans = self._active[item.nodeid]
            if runtime.active() != bans:
                runtime.record_violation(f"{_topic(item)}: the test's bans were changed while it ran")
            runtime.scan_student_modules()
            found = runtime.take_violations()
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
                runtime.restore(active[0])
            changed = self._verify()
            if changed:
                hardware = sys.modules.get("lab.hardware")      # peaks measured with a patched clock are void
                if hardware is not None and hasattr(hardware.peaks, "cache_clear"):
                    hardware.peaks.cache_clear()
                raise TamperError(f"{_topic(item)}: {'; '.join(changed)} during this test; its results are "
                                  "void (put back for the next test)")

    def pytest_unconfigure(self) -> None:
        runtime.uninstall()
