"""Grading a submission in isolation: only the files a student may edit, copied into a clean tree.

    manifest = collect(source, root, topics)             # what is taken from the submission, with sha256
    sandbox, stubs = build_sandbox(root, work, manifest)  # a clean tree to run `--impl exercises` in

`source` is a student's checkout (holding exercises/), a folder laid out like exercises/ (infNN/...), a
flat folder of module files (each name belonging to exactly one topic), or a .zip of any of these. Only
the modules of each topic's pristine stubs are taken (`exercises/infNN/<module>.py`, never a test,
conftest.py or __init__.py); every other file is listed as ignored, with the reason. The sandbox is a
copy of the root without solutions/, tests/ (planted versions), docs/ and caches, whose stub modules are
replaced by the submitted ones: tests, hidden tests, lab/, conftest.py and the grader are the root's, so
editing them gains nothing, and `solutions` is neither importable nor on disk there.
Topics or modules the submission lacks keep their stubs ("not started").
"""
from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

from grading import tree
from lab.paths import TOPIC_NAME

MAX_FILE_BYTES = 1 << 20
MAX_ZIP_BYTES, MAX_ZIP_FILES = 256 << 20, 20_000
SANDBOX_LEAVES_OUT = ("solutions", "tests", "docs", "*.ipynb", ".github", "grading/autograder")
_TOPIC = TOPIC_NAME


class SubmissionError(ValueError):
    """The submission cannot be read or holds nothing gradable; the message says what to fix."""


def stub_modules(root: Path, topic: str) -> list[str]:
    """File names a student may submit for `topic`: the pristine stubs, without tests and package files."""
    return sorted(p.name for p in (Path(root) / "exercises" / topic).glob("*.py")
                  if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py", "notebook.py"))


def _unzip(archive: Path, dest: Path) -> Path:
    """Extract a zip safely: no absolute or `..` paths, no links, bounded size and count."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise SubmissionError(f"{archive}: more than {MAX_ZIP_FILES} files or {MAX_ZIP_BYTES >> 20} MiB")
            for member in members:
                parts = Path(member.filename).parts
                is_link = stat.S_ISLNK(member.external_attr >> 16)
                if member.is_dir() or is_link or member.filename.startswith("/") or ".." in parts:
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise SubmissionError(f"{archive} is not a readable zip file: {exc}") from None
    return dest


def _topic_folders(base: Path) -> Path | None:
    """The folder holding infNN/ folders: base/exercises, base, or one level down (a zip's top folder)."""
    for candidate in [base / "exercises", base] + [d / "exercises" for d in sorted(base.iterdir()) if d.is_dir()] \
            + [d for d in sorted(base.iterdir()) if d.is_dir()]:
        if candidate.is_dir() and any(d.is_dir() and _TOPIC.match(d.name) for d in candidate.iterdir()):
            return candidate
    return None


def _candidates(base: Path, topics: list[str], root: Path) -> tuple[dict, list[dict]]:
    """{(topic, module): file} found in the submission, and the files ignored with their reasons."""
    found, ignored = {}, []
    folders = _topic_folders(base)
    allowed = {topic: stub_modules(root, topic) for topic in topics}
    owners: dict[str, list[str]] = {}
    for topic, names in allowed.items():
        for name in names:
            owners.setdefault(name, []).append(topic)
    files = sorted(p for p in (folders or base).rglob("*") if p.is_file() or p.is_symlink())
    for path in files:
        rel = path.relative_to(base).as_posix()
        parts = path.relative_to(folders or base).parts
        if any(tree._never(part) for part in parts):
            continue
        topic = parts[0] if folders is not None and len(parts) == 2 else None
        name = parts[-1]
        if folders is None:                           # a flat upload: the name says the topic
            mine = [t for t in owners.get(name, []) if len(parts) == 1]
            topic = mine[0] if len(mine) == 1 else None
            reason = "its name belongs to several topics; submit exercises/infNN/" + name if len(mine) > 1 else None
        else:
            reason = None
        if reason is None and (topic not in allowed or name not in allowed.get(topic, [])):
            reason = ("a test file: the lab's own tests are used" if name.startswith("test_") else
                      "not a module a student edits (only exercises/infNN/<stub module>.py are graded)")
        if reason is None and (path.is_symlink() or path.stat().st_size > MAX_FILE_BYTES):
            reason = "a link" if path.is_symlink() else f"larger than {MAX_FILE_BYTES >> 20} MiB"
        if reason:
            ignored.append({"path": rel, "reason": reason})
        else:
            found[(topic, name)] = path
    return found, ignored


def collect(source: str | Path, root: Path, topics: list[str], work: Path) -> dict:
    """The manifest of a submission: the files taken (topic, module, path, sha256, bytes), those ignored,
    and the stub modules it did not provide. A zip is extracted under `work`."""
    source = Path(source)
    if not source.exists():
        raise SubmissionError(f"--submission {source} does not exist")
    base = source
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise SubmissionError(f"--submission {source}: give a folder or a .zip file")
        base = _unzip(source, Path(work) / "unzipped")
    found, ignored = _candidates(base, topics, Path(root))
    archives = sorted(base.glob("*.zip")) if base.is_dir() else []
    if not found and len(archives) == 1:                 # an upload of one zip, left as it came
        return collect(archives[0], root, topics, work)
    files = [{"topic": t, "module": m, "path": p.relative_to(base).as_posix(), "sha256": tree.sha256(p),
              "bytes": p.stat().st_size} for (t, m), p in sorted(found.items())]
    missing = [f"{t}/{m}" for t in topics for m in stub_modules(root, t) if (t, m) not in found]
    if not files:
        raise SubmissionError(f"--submission {source}: no module of the topics graded ({', '.join(topics)}) "
                              "was found; lay it out like the lab (exercises/infNN/<module>.py)")
    return {"source": str(source.resolve()), "files": files, "ignored": ignored, "missing": missing,
            "base": str(base)}


def build_sandbox(root: Path, work: Path, manifest: dict) -> tuple[Path, Path]:
    """A clean copy of `root` with the submitted modules in exercises/, and the pristine stubs beside it
    (`stubs/`, laid out like exercises/: the fallback collection of a topic that fails to collect)."""
    root, work = Path(root), Path(work)
    sandbox, stubs = work / "lab", work / "stubs"
    tree.copy_files(root, sandbox, tree.lab_files(root, SANDBOX_LEAVES_OUT))
    cache = root / ".lab-cache"
    cache.mkdir(exist_ok=True)
    (sandbox / ".lab-cache").symlink_to(cache.resolve(), target_is_directory=True)   # the dequantized model
    for topic_dir in sorted((root / "exercises").glob("inf[0-9][0-9]")):
        for name in stub_modules(root, topic_dir.name):
            (stubs / topic_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(topic_dir / name, stubs / topic_dir.name / name)
    base = Path(manifest["base"])
    for entry in manifest["files"]:
        target = sandbox / "exercises" / entry["topic"] / entry["module"]
        shutil.copyfile(base / entry["path"], target)
        if tree.sha256(target) != entry["sha256"]:
            raise SubmissionError(f"{entry['path']} changed while it was being copied; grade it again")
    return sandbox, stubs
