"""Answers in the release: every solution's distinctive code, searched for in what a student can read.

The stubs hide what lies between `# BEGIN SOLUTION` and `# END SOLUTION`; nothing else a release ships
(lab/, the tests, the lessons, the notebooks, the grader) may hold it either, or a student copies the
answer from a support file instead of writing it. A solution region's lines are normalized (comments and
all whitespace dropped) and a line counts as distinctive when it is long enough and not boilerplate (a
bare `return x`, a `raise ValueError(f"...` line alone, which every validating function writes). A
release file leaks a region when it holds `MIN_LINES` of the region's distinctive lines (or all of them,
for a shorter region).

One exception: a topic's own lesson (exercises/infNN/README.md) may show the shape of its code inside
`<details>` hint blocks, which a student opens by choice; those blocks are not searched for that topic's
regions (and are for every other topic's).

    python -m grading.tools.leaks [DIR]      # search a built release (default: what `release` would ship)
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from grading.tools.stubs import BEGIN, END
from lab.paths import REPO_ROOT

MIN_CHARS = 28           # a normalized line shorter than this is too common to mean anything
MIN_LINES = 3            # a file leaks a region when it holds this many of its distinctive lines
SEARCHED = (".py", ".md", ".ipynb", ".toml", ".txt", ".yml", ".yaml", ".json", ".sh", ".cfg")
_HINTS = re.compile(r"<details>.*?</details>", re.S)
_LESSON = re.compile(r"exercises/(inf\d+)/README\.md$")
_BOILERPLATE = ("raise", "f\"", "f'", "\"", "'")      # an error message (or its continuation): every stub says it too


@dataclass
class Region:
    solution: str                     # solutions/infNN/module.py
    first_line: int                   # of the region's code (1-based)
    lines: dict[str, str] = field(default_factory=dict)        # normalized -> as written


@dataclass
class Leak:
    file: str                         # relative to the release
    region: Region
    found: list[str]                  # the region's lines, as written, that the file holds

    def __str__(self) -> str:
        shown = "\n".join(f"    {line.strip()}" for line in self.found[:6])
        more = f"\n    ... and {len(self.found) - 6} more" if len(self.found) > 6 else ""
        return (f"{self.file} holds {len(self.found)} lines of the answer in {self.region.solution} "
                f"(region at line {self.region.first_line}):\n{shown}{more}")


_LAYOUT = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


def normalize(line: str) -> str:
    """A line of code without its comment and without any whitespace ('' for a comment or blank line)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
        code = "".join(t.string for t in tokens if t.type not in _LAYOUT)
    except (tokenize.TokenError, IndentationError, SyntaxError):     # half a statement: drop the comment by hand
        code = line.split("  #")[0] if "  #" in line else line
        code = "" if code.strip().startswith("#") else code
    return "".join(code.split())


def _distinctive(norm: str) -> bool:
    return len(norm) >= MIN_CHARS and not norm.startswith(_BOILERPLATE)


def regions(root: Path = REPO_ROOT) -> list[Region]:
    """Every marked region of every solution, with its distinctive normalized lines."""
    found = []
    for path in sorted((Path(root) / "solutions").glob("inf*/*.py")):
        region = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip() == BEGIN:
                region = Region(path.relative_to(root).as_posix(), number + 1)
            elif line.strip() == END:
                if region and region.lines:
                    found.append(region)
                region = None
            elif region is not None:
                norm = normalize(line)
                if _distinctive(norm):
                    region.lines.setdefault(norm, line)
    return found


def _text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix == ".ipynb":                   # the cells' sources, one line each
        try:
            cells = json.loads(text).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) for c in cells)
        except (ValueError, AttributeError):
            pass
    return text


def _normalized(text: str) -> set[str]:
    return {normalize(line) for line in text.splitlines()} - {""}


def search(files: dict[str, Path], found_regions: list[Region]) -> list[Leak]:
    """The leaks of `found_regions` in `files` ({relative name: path})."""
    leaks = []
    for rel, path in sorted(files.items()):
        if not rel.endswith(SEARCHED):
            continue
        text = _text(path)
        if text is None:
            continue
        lesson = _LESSON.search(rel)
        held = _normalized(text)
        held_outside_hints = _normalized(_HINTS.sub("", text)) if lesson else held
        for region in found_regions:
            own = lesson and region.solution.startswith(f"solutions/{lesson.group(1)}/")
            lines = held_outside_hints if own else held
            hits = [written for norm, written in region.lines.items() if norm in lines]
            if hits and len(hits) >= min(MIN_LINES, len(region.lines)):
                leaks.append(Leak(rel, region, hits))
    return leaks


def search_release(release: Path, root: Path = REPO_ROOT) -> list[Leak]:
    """The leaks in a built release (`root`'s solutions are what is searched for)."""
    release = Path(release)
    files = {p.relative_to(release).as_posix(): p for p in release.rglob("*") if p.is_file()}
    return search(files, regions(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.tools.leaks", description=__doc__.split("\n")[0])
    parser.add_argument("release", nargs="?", type=Path,
                        help="a built release (default: build one in a temporary folder)")
    args = parser.parse_args(argv)
    if args.release is None:
        import tempfile

        from grading.tools import release
        with tempfile.TemporaryDirectory(prefix="lab-leaks-") as tmp:
            release.build(Path(tmp) / "release")
            leaks = search_release(Path(tmp) / "release")
    elif not args.release.is_dir():
        print(f"python -m grading.tools.leaks: error: {args.release} is not a folder", file=sys.stderr)
        return 2
    else:
        leaks = search_release(args.release)
    for leak in leaks:
        print(leak, end="\n\n")
    print(f"{len(leaks)} leak(s)" if leaks else "no solution's answer found outside the stubs")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
