"""The fake lab's oracle cache: `python -m lab.weights --build-cache DIR` writes DIR/oracle.txt."""
import os
import sys
from pathlib import Path

ANSWER = 42


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_CACHE_DIR") or Path(__file__).resolve().parent.parent / ".lab-cache")


def oracle_answer() -> int:
    return int((cache_dir() / "oracle.txt").read_text())


if __name__ == "__main__" and sys.argv[1:2] == ["--build-cache"]:
    folder = Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "oracle.txt").write_text(f"{ANSWER}\n")
