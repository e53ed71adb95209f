"""Grading a submission in isolation: only the files a student may edit, copied into a clean tree.

    manifest = collect(source, root, topics, work)       # what is taken from the submission, with sha256
    sandboxes = Sandboxes(root, work, manifest)           # the verified oracle cache, the pristine stubs
    with sandboxes.topic("inf10") as place:               # a fresh tree per topic, thrown away after it
        run = runner.run_topic(place.root, ..., sandbox_env=place.env)
        run.tampering += place.check()                    # what the topic changed that it may not

`source` is a student's checkout (holding exercises/), a folder laid out like exercises/ (infNN/...), a
flat folder of module files (each name belonging to exactly one topic), or a .zip of any of these. Only
the modules of each topic's pristine stubs are taken (`exercises/infNN/<module>.py`, never a test,
conftest.py or __init__.py); every other file is listed as ignored, with the reason. The sandbox is a
copy of the root without solutions/, tests/ (planted versions), docs/ and caches, whose stub modules are
replaced by the submitted ones: tests, hidden tests, lab/, conftest.py and the grader are the root's, so
editing them gains nothing, and `solutions` is neither importable nor on disk there.
Topics or modules the submission lacks keep their stubs ("not started").

Each topic runs in its own fresh sandbox (`Sandboxes.topic`), built before it and deleted after it, so
nothing one topic writes (a conftest.py, a patched test, a cache file) reaches the next topic or the next
grading. In it:
- every file is read-only (mode 0444, folders 0555) but the topic's own submitted modules; the topic's
  scratch folder (HOME, TMPDIR, Triton's and Inductor's caches) is outside the tree;
- nothing links or names the instructor's checkout: no symlink (the oracle cache is a COPY), the
  environment is rebuilt without any variable whose value lies inside the root (PYTHONPATH, VIRTUAL_ENV,
  PATH entries), the working folder is the sandbox;
- `.lab-cache/` holds copies of the oracle artifacts verified by `TrustedCache` (sha256 against the
  record the grader wrote when it built them from the GGUF file, in a process that ran no student code);
- after the topic, `check()` reports as tampering any change to the sandbox's cache or to the
  instructor's (which is then rebuilt), and the grader voids the topic.
File modes bind only a grader that does not run as root; the fresh copy and the checks hold either way.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
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
    for owner, names in allowed.items():
        for name in names:
            owners.setdefault(name, []).append(owner)
    files = sorted(p for p in (folders or base).rglob("*") if p.is_file() or p.is_symlink())
    for path in files:
        rel = path.relative_to(base).as_posix()
        parts = path.relative_to(folders or base).parts
        if any(tree._never(part) for part in parts):
            continue
        topic: str | None = parts[0] if folders is not None and len(parts) == 2 else None
        name = parts[-1]
        reason: str | None
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


class TrustedCache:
    """The oracle artifacts of the root's cache folder, verified before any student code runs.

    The artifacts are what `python -m lab.weights --build-cache DIR` writes into an empty DIR (the
    dequantized weights, transformers' converted oracle). `RECORD` in the cache folder holds their
    sha256, written only here, after a build in a fresh private folder by a process that runs the
    root's own code and nothing of a submission. `verify()` (at the start of a grading) keeps the
    artifacts that match the record and rebuilds the rest (missing, changed, or no record: "recomputed
    from the GGUF", never trusted as found). The digests stay in this process's memory: `changed()`
    (after each topic) compares the folder with them, and `repair()` rebuilds what changed.
    """

    RECORD = "trusted-sha256.json"
    BUILD_TIMEOUT_S = 1800
    BUILDER_FILES = ("lab/weights.py", "lab/oracle.py", "lab/tokenizer.py")    # a change means: build again

    def __init__(self, root: Path):
        self.root = Path(root)
        self.folder = Path(os.environ.get("LAB_CACHE_DIR") or self.root / ".lab-cache")
        self.digests: dict[str, str] = {}                  # relative path -> sha256
        self._stats: dict[str, tuple] = {}
        self.rebuilt: list[str] = []

    def _builder(self) -> list[str] | None:
        has = (self.root / "lab" / "weights.py").is_file() and \
            "--build-cache" in (self.root / "lab" / "weights.py").read_text(encoding="utf-8", errors="replace")
        return [sys.executable, "-m", "lab.weights", "--build-cache"] if has else None

    @staticmethod
    def _stat(path: Path) -> tuple:
        st = path.stat()
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino

    def _builder_digest(self) -> str:
        digest = hashlib.sha256()
        for rel in self.BUILDER_FILES:
            path = self.root / rel
            digest.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
        return digest.hexdigest()

    def _read_record(self) -> dict[str, str]:
        """The recorded digests, or {} when there is none or it was made by another version of the builder."""
        try:
            record = json.loads((self.folder / self.RECORD).read_text())
            if record.get("builder") != self._builder_digest():
                return {}
            return {k: v for k, v in record["files"].items() if isinstance(k, str) and isinstance(v, str)}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            return {}

    def _build(self) -> dict[str, str]:
        """Build every artifact in a fresh private folder, move them in, write the record."""
        command = self._builder()
        if command is None:
            return {}
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".trusted-build-", dir=self.folder) as build:
            env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "LAB_IMPL")}
            env.update(LAB_CACHE_DIR=build, PYTHONPATH=str(self.root))
            done = subprocess.run(command + [build], cwd=self.root, env=env, capture_output=True, text=True,
                                  timeout=self.BUILD_TIMEOUT_S, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"building the oracle cache failed: {(done.stderr or done.stdout).strip()[-2000:]}")
            built = {p.relative_to(build).as_posix(): tree.sha256(p) for p in sorted(Path(build).rglob("*"))
                     if p.is_file()}
            for rel in built:
                target = self.folder / rel
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(Path(build) / rel, target)
        record = self.folder / self.RECORD
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"builder": self._builder_digest(), "files": built}, indent=1, sort_keys=True))
        os.replace(tmp, record)
        self.rebuilt += sorted(built)
        return built

    def _note(self) -> None:
        self._stats = {rel: self._stat(self.folder / rel) for rel in self.digests}
        if self.digests:
            self._stats[self.RECORD] = self._stat(self.folder / self.RECORD)

    def verify(self) -> dict[str, str]:
        """The verified artifacts {relative path: sha256}, rebuilding what does not match its record."""
        record = self._read_record()
        good = bool(record) and all((self.folder / rel).is_file() and not (self.folder / rel).is_symlink()
                                    and tree.sha256(self.folder / rel) == digest for rel, digest in record.items())
        self.digests = record if good else self._build()
        self._note()
        return self.digests

    def changed(self) -> list[str]:
        """The artifacts (or the record) that differ from what `verify()` saw; [] when none."""
        changed = []
        for rel, seen in self._stats.items():
            path = self.folder / rel
            try:
                now = None if path.is_symlink() else self._stat(path)
            except OSError:
                now = None
            if now == seen:
                continue
            if now is None:
                changed.append(rel)
            elif rel == self.RECORD:
                if self._read_record() != self.digests:
                    changed.append(rel)
            elif tree.sha256(path) != self.digests[rel]:       # touched but the same bytes: harmless
                changed.append(rel)
        return changed

    def repair(self) -> None:
        """Rebuild from the GGUF file, after `changed()` found something."""
        self.digests = self._build()
        self._note()

    def copy_into(self, dest: Path) -> dict[str, tuple]:
        """Read-only copies of the verified artifacts under `dest`, each checked again after copying."""
        stats = {}
        for rel, digest in self.digests.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.folder / rel, target)
            if tree.sha256(target) != digest:
                raise RuntimeError(f"the oracle cache file {rel} changed while it was copied; grade again")
            os.chmod(target, 0o444)
            stats[rel] = self._stat(target)
        return stats


@dataclass
class Place:
    """Where one topic runs: its sandbox root, its environment, and the check to make after it."""

    root: Path
    env: dict[str, str]
    cache: Path
    cache_stats: dict[str, tuple] = field(default_factory=dict)
    trusted: TrustedCache | None = None
    stubs: Path | None = None            # the pristine stubs, laid out like exercises/ (fallback collection)

    def check(self) -> list[str]:
        """Tampering this topic did: a change to the sandbox's oracle cache or to the instructor's."""
        found = []
        present = {p.relative_to(self.cache).as_posix() for p in self.cache.rglob("*")
                   if p.is_file() or p.is_symlink()} if self.cache.is_dir() else set()
        for rel in sorted(present | set(self.cache_stats)):
            path = self.cache / rel
            try:
                now = None if path.is_symlink() else TrustedCache._stat(path)
            except OSError:
                now = None
            if now != self.cache_stats.get(rel):
                found.append(f"the sandbox's oracle cache file {rel} was written, replaced or removed (if the lab "
                             "itself caches it, build it in lab.weights.build_cache)")
        if self.trusted is not None:
            broken = self.trusted.changed()
            if broken:
                found.append(f"the instructor's oracle cache ({', '.join(broken)}) was changed; it was rebuilt")
                self.trusted.repair()
        return found


def sandbox_environment(root: Path, scratch: Path, cache: Path) -> dict[str, str]:
    """The environment of a sandboxed topic: the grader's, less anything that names `root` (or lies inside
    it), with HOME, TMPDIR and the compilers' caches in the topic's own scratch folder."""
    inside = [str(Path(root).resolve()), str(Path(root).absolute())]

    def names_root(value: str) -> bool:
        return any(part and (part == r or part.startswith(r + os.sep)) for r in inside
                   for part in [value] + value.split(os.pathsep))

    env = {}
    for key, value in os.environ.items():
        if key in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV", "PYTHONSTARTUP", "LAB_IMPL", "OLDPWD", "PWD"):
            continue
        if key == "PATH":
            value = os.pathsep.join(p for p in value.split(os.pathsep) if not names_root(p))
        elif names_root(value) or any(r in value for r in inside):
            continue
        env[key] = value
    for sub in ("home", "tmp", "triton", "inductor", "xdg"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(scratch / "home"), TMPDIR=str(scratch / "tmp"), TRITON_CACHE_DIR=str(scratch / "triton"),
               TORCHINDUCTOR_CACHE_DIR=str(scratch / "inductor"), XDG_CACHE_HOME=str(scratch / "xdg"),
               LAB_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    return env


def exposures(root: Path) -> list[str]:
    """Ways the Python environment itself names the instructor's checkout to a sandboxed topic (warnings:
    the sandbox cannot hide them; install the environment outside the checkout, without `pip install -e`)."""
    import site
    import sysconfig
    inside = Path(root).resolve()
    found = []
    for label, where in (("the Python environment (sys.prefix)", sys.prefix), ("the interpreter", sys.executable)):
        if Path(where).absolute().is_relative_to(inside) or Path(where).resolve().is_relative_to(inside):
            found.append(f"{label} lies inside {inside}: a submission can read the checkout's path from it")
            break
    folders = {sysconfig.get_paths().get("purelib", "")} | set(getattr(site, "getsitepackages", list)())
    for folder in filter(None, folders):
        for finder in sorted(Path(folder).glob("__editable__*finder.py")):
            with contextlib.suppress(OSError):
                if str(inside) in finder.read_text(encoding="utf-8", errors="replace"):
                    found.append(f"an editable install ({finder.name}) maps modules to {inside}: a submission "
                                 "can read the checkout's path from it (install with `pip install .`)")
    return found


def _read_only(top: Path, writable: set[Path]) -> None:
    """Files 0444 and folders 0555 under `top`, but the `writable` files (0644) and folders (left as they are)."""
    for folder, dirs, files in os.walk(top):
        if any(Path(folder).is_relative_to(w) for w in writable):
            continue
        for name in files:
            path = Path(folder) / name
            os.chmod(path, 0o644 if path in writable else 0o444)
    for folder, dirs, files in os.walk(top, topdown=False):
        if not any(Path(folder).is_relative_to(w) for w in writable):
            os.chmod(folder, 0o555)


def _writable_again(top: Path) -> None:
    """Undo `_read_only` so that the sandbox can be deleted (a topic may have chmod-ed things too)."""
    for folder, dirs, files in os.walk(top):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o755)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(Path(folder) / name, 0o755, follow_symlinks=False)


class Sandboxes:
    """Fresh sandboxes for the topics of one submission (see the module docstring).

    The submitted modules and the pristine stubs are read into memory here, before any student code
    runs, and written into each sandbox from there: nothing a topic does to files on disk reaches them."""

    def __init__(self, root: Path, work: Path, manifest: dict, trusted: TrustedCache | None = None):
        self.root, self.work, self.manifest = Path(root), Path(work), manifest
        self.files = tree.lab_files(self.root, SANDBOX_LEAVES_OUT)
        self.trusted = trusted if trusted is not None else TrustedCache(self.root)
        self.trusted.verify()               # before any student code runs
        base = Path(manifest["base"])
        self.submitted: list[tuple[str, str, bytes]] = []
        for entry in manifest["files"]:
            data = (base / entry["path"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise SubmissionError(f"{entry['path']} changed while it was being read; grade it again")
            self.submitted.append((entry["topic"], entry["module"], data))
        self.pristine = {(d.name, name): (d / name).read_bytes()
                         for d in sorted((self.root / "exercises").glob("inf[0-9][0-9]"))
                         for name in stub_modules(self.root, d.name)}
        self.stubs = self.work / "stubs"     # the fallback's impl; each sandbox gets its own copy (Place.stubs)
        self._count = 0

    def build(self, topic: str | None) -> Place:
        """A fresh sandbox in a new temporary folder (not under `work`, whose path the topic is not told):
        the root's lab files, the submitted modules, the pristine stubs, the verified cache."""
        self._count += 1
        top = Path(tempfile.mkdtemp(prefix="lab-sandbox-"))
        sandbox, scratch, stubs = top / "lab", top / "scratch", top / "stubs"
        tree.copy_files(self.root, sandbox, self.files)
        if not (sandbox / "grading" / "plugin.py").is_file():     # a lab without its own grader (tests' fakes)
            own = Path(__file__).resolve().parent
            (sandbox / "grading").mkdir(exist_ok=True)
            for name in ("__init__.py", "plugin.py", "hardware.py"):
                shutil.copyfile(own / name, sandbox / "grading" / name)
        for (stub_topic, name), data in self.pristine.items():
            (stubs / stub_topic).mkdir(parents=True, exist_ok=True)
            (stubs / stub_topic / name).write_bytes(data)
        writable = set()
        for entry_topic, module, data in self.submitted:
            target = sandbox / "exercises" / entry_topic / module
            target.write_bytes(data)
            if entry_topic == topic:
                writable.add(target)
        cache = sandbox / ".lab-cache"
        cache.mkdir()
        self.trusted.copy_into(cache)
        env = sandbox_environment(self.root, scratch, cache)        # creates the scratch folders
        _read_only(top, writable | {scratch})
        stats = {rel: TrustedCache._stat(cache / rel) for rel in self.trusted.digests}    # after the chmods
        return Place(sandbox, env, cache, stats, self.trusted, stubs)

    @contextlib.contextmanager
    def topic(self, topic: str | None):
        """A fresh sandbox for one topic's run, deleted when the block ends."""
        place = self.build(topic)
        try:
            yield place
        finally:
            top = place.root.parent
            _writable_again(top)
            shutil.rmtree(top, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m grading.isolate --trust-cache [ROOT]`: build (if needed), verify and record the oracle cache
    now, e.g. when an autograder image is built, so that the first grading does not have to."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "--trust-cache" or len(argv) > 2:
        print("usage: python -m grading.isolate --trust-cache [ROOT]", file=sys.stderr)
        return 2
    trusted = TrustedCache(Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent))
    digests = trusted.verify()
    print(f"oracle cache {trusted.folder}: {len(digests)} file(s) verified"
          + (f", rebuilt: {', '.join(trusted.rebuilt)}" if trusted.rebuilt else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
