"""Planted versions: wrong, slow or cheating implementations stored as diffs against the reference.

Each planted version is two files in `tests/planted/<topic>/`:

    <name>.toml    description = "...", expect_fail = ["test_...", ...], optional naive = true, naive_for = [...]
    <name>.diff    a unified diff against solutions/<topic>/, paths a/<module>.py and b/<module>.py

`materialize` copies solutions/<topic> into a folder laid out `<root>/<topic>/...` (an implementation root
for `--impl`) and applies the diff there with the small applier below, so nothing depends on `patch`
being installed. A hunk applies only where its context and removed lines match the current solution
exactly (at the line it names, or the nearest place above or below it); when none matches, the diff no
longer applies and `PlantedDiffError` names the planted version, the file and the hunk.

    python -m grading.planted --check                      # every diff still applies
    python -m grading.planted inf10/concat-cache DIR       # materialize one into DIR (then: --impl DIR)
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.paths import REPO_ROOT, TOPIC_NAME

PLANTED_DIR = REPO_ROOT / "tests" / "planted"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"


class PlantedDiffError(ValueError):
    """A planted version's diff is malformed or no longer applies to the current solution."""


@dataclass
class Hunk:
    old_start: int                  # 1-based line in the original (0 for a new file)
    new_start: int
    lines: list[str] = field(default_factory=list)      # " context", "-removed", "+added" (no newlines)
    old_eof_newline: bool = True
    new_eof_newline: bool = True

    @property
    def header(self) -> str:
        return f"@@ -{self.old_start} +{self.new_start} @@"

    def old(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] in " -"]

    def new(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] in " +"]


@dataclass
class FilePatch:
    path: str                       # relative to the topic's folder ("kv_cache.py")
    hunks: list[Hunk] = field(default_factory=list)
    deleted: bool = False


def _strip_prefix(header: str) -> str | None:
    """'a/kv_cache.py\t2026-...' -> 'kv_cache.py' (one leading component, as `patch -p1`); None for /dev/null."""
    path = header.split("\t")[0].strip()
    if path == "/dev/null":
        return None
    if "/" not in path:
        raise PlantedDiffError(f"path {path!r} has no leading a/ or b/ component to strip (-p1)")
    return path.split("/", 1)[1]


def parse_diff(text: str) -> list[FilePatch]:
    """The file patches of a unified diff (`diff -ruN a b` output: lines outside hunks are ignored)."""
    patches: list[FilePatch] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old, new = _strip_prefix(line[4:]), _strip_prefix(lines[i + 1][4:])
            path = new or old
            if path is None:
                raise PlantedDiffError(f"line {i + 1}: both sides are /dev/null")
            patches.append(FilePatch(path, deleted=new is None))
            i += 2
            continue
        match = _HUNK.match(line)
        if match:
            if not patches:
                raise PlantedDiffError(f"line {i + 1}: a hunk before any '--- a/... +++ b/...' header")
            old_len = int(match.group(2)) if match.group(2) is not None else 1
            new_len = int(match.group(4)) if match.group(4) is not None else 1
            hunk = Hunk(int(match.group(1)), int(match.group(3)))
            i += 1
            seen_old = seen_new = 0
            while i < len(lines) and (seen_old < old_len or seen_new < new_len or
                                      (i < len(lines) and lines[i] == _NO_NEWLINE)):
                body = lines[i]
                if body == _NO_NEWLINE:
                    if hunk.lines and hunk.lines[-1][0] == "-":
                        hunk.old_eof_newline = False
                    elif hunk.lines and hunk.lines[-1][0] == "+":
                        hunk.new_eof_newline = False
                    else:
                        hunk.old_eof_newline = hunk.new_eof_newline = False
                    i += 1
                    continue
                kind = body[:1] or " "                  # an empty line is an empty context line
                if kind not in " -+":
                    raise PlantedDiffError(f"line {i + 1}: {body!r} in a hunk that needs {old_len - seen_old} "
                                           f"more old and {new_len - seen_new} more new lines")
                hunk.lines.append(kind + body[1:])
                seen_old += kind in " -"
                seen_new += kind in " +"
                i += 1
            if seen_old != old_len or seen_new != new_len:
                raise PlantedDiffError(f"hunk {hunk.header}: the diff ends inside it")
            patches[-1].hunks.append(hunk)
            continue
        i += 1
    return patches


def _find(lines: list[str], wanted: list[str], around: int) -> int | None:
    """The index nearest `around` where `wanted` matches `lines` exactly, or None."""
    if not wanted:
        return min(max(around, 0), len(lines))
    for distance in range(len(lines) + 1):
        for start in (around - distance, around + distance) if distance else (around,):
            if 0 <= start <= len(lines) - len(wanted) and lines[start:start + len(wanted)] == wanted:
                return start
    return None


def apply_patch(original: str, patch: FilePatch) -> str:
    """`original` with the patch's hunks applied; raises PlantedDiffError naming the hunk that fails."""
    lines = original.splitlines()
    eof_newline = original.endswith("\n") or not original
    offset = 0
    for number, hunk in enumerate(patch.hunks, 1):
        expected = hunk.old_start - 1 + offset if hunk.old_start else 0
        at = _find(lines, hunk.old(), expected)
        if at is None:
            wanted = hunk.old()
            near = lines[max(expected, 0):max(expected, 0) + len(wanted)]
            first = next((k for k, (w, h) in enumerate(zip(wanted, near)) if w != h), min(len(wanted), len(near)))
            raise PlantedDiffError(
                f"hunk {number} ({hunk.header}) does not apply to {patch.path}: its context and removed lines "
                f"are found nowhere in the current solution; at line {expected + first + 1} it expects\n"
                f"    {wanted[first] if first < len(wanted) else '<end of file>'!r}\nbut the solution has\n"
                f"    {near[first] if first < len(near) else '<end of file>'!r}")
        lines[at:at + len(hunk.old())] = hunk.new()
        offset = at + len(hunk.new()) - (hunk.old_start - 1 + len(hunk.old())) if hunk.old_start else len(hunk.new())
        if at + len(hunk.new()) == len(lines):      # the hunk reaches the end: it says how the file ends
            eof_newline = hunk.new_eof_newline
    return "\n".join(lines) + ("\n" if eof_newline and lines else "")


def apply_diff(text: str, folder: Path, label: str = "diff") -> list[Path]:
    """Apply a unified diff (paths a/..., b/...) to the files under `folder`; returns the files it wrote."""
    try:
        patches = parse_diff(text)
    except PlantedDiffError as error:
        raise PlantedDiffError(f"{label}: {error}") from None
    written = []
    for patch in patches:
        target = (folder / patch.path).resolve()
        if not target.is_relative_to(folder.resolve()):
            raise PlantedDiffError(f"{label}: {patch.path} lies outside the topic's folder")
        creates = all(h.old_start == 0 for h in patch.hunks) and not target.exists()
        if not target.exists() and not creates:
            raise PlantedDiffError(f"{label}: {patch.path} is not a file of the current solution")
        try:
            result = apply_patch("" if creates else target.read_text(), patch)
        except PlantedDiffError as error:
            raise PlantedDiffError(f"{label}: {error}") from None
        if patch.deleted:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(result)
        written.append(target)
    return written


@dataclass(frozen=True)
class Planted:
    """One planted version: `tests/planted/<topic>/<name>.toml` and `.diff`."""

    topic: str
    name: str
    meta: dict

    @property
    def label(self) -> str:
        return f"{self.topic}/{self.name}"

    @property
    def diff_path(self) -> Path:
        return PLANTED_DIR / self.topic / f"{self.name}.diff"

    @property
    def description(self) -> str:
        return self.meta.get("description", "")

    @property
    def expect_fail(self) -> list[str]:
        return list(self.meta.get("expect_fail", []))

    @property
    def naive(self) -> bool:
        return bool(self.meta.get("naive"))

    @property
    def naive_for(self) -> list[str]:
        return list(self.meta.get("naive_for", []))


def planted_versions(topic: str | None = None, root: Path = PLANTED_DIR) -> list[Planted]:
    """Every planted version (of one topic), sorted by topic and name."""
    pattern = f"{topic}/*.toml" if topic else "inf[0-9][0-9]/*.toml"
    return [Planted(p.parent.name, p.stem, tomllib.loads(p.read_text())) for p in sorted(root.glob(pattern))]


def find(label: str) -> Planted:
    """The planted version named 'inf10/concat-cache'."""
    topic, _, name = label.partition("/")
    found = [p for p in planted_versions(topic) if p.name == name]
    if not found:
        known = ", ".join(p.label for p in planted_versions(topic or None)) or "none"
        raise PlantedDiffError(f"no planted version {label!r} (known: {known})")
    return found[0]


def materialize(planted: Planted, dest: Path, solutions: Path = REPO_ROOT / "solutions") -> Path:
    """Copy every topic's solution to `dest/<topic>` (a later topic builds on the earlier ones through the
    impl switch, as a student's does) and apply the planted diff to its own topic; returns `dest` (an
    implementation root for --impl / LAB_IMPL)."""
    folder = dest / planted.topic
    for source in sorted(p for p in solutions.iterdir() if p.is_dir() and TOPIC_NAME.match(p.name)):
        if (dest / source.name).exists():
            shutil.rmtree(dest / source.name)
        shutil.copytree(source, dest / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not planted.diff_path.is_file():
        raise PlantedDiffError(f"{planted.label}: {planted.diff_path.relative_to(REPO_ROOT)} is missing")
    apply_diff(planted.diff_path.read_text(), folder, planted.label)
    return dest


@contextmanager
def materialized(planted: Planted):
    """A temporary implementation root holding the planted version, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"planted-{planted.topic}-{planted.name}-") as tmp:
        yield materialize(planted, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.planted", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="check that every planted diff still applies")
    parser.add_argument("version", nargs="?", help="topic/name, e.g. inf10/concat-cache")
    parser.add_argument("dest", nargs="?", type=Path, help="the folder to materialize it into")
    args = parser.parse_args(argv)
    if args.check:
        bad = 0
        versions = planted_versions()
        for planted in versions:
            try:
                with materialized(planted):
                    pass
            except PlantedDiffError as error:
                print(f"error: {error}", file=sys.stderr)
                bad += 1
        print(f"{len(versions) - bad} of {len(versions)} planted diffs apply")
        return 1 if bad else 0
    if not (args.version and args.dest):
        parser.error("give --check, or a planted version and a destination folder")
    try:
        root = materialize(find(args.version), args.dest.resolve())
    except PlantedDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.version} -> {root}  (pytest exercises/{args.version.split('/')[0]} --impl {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
