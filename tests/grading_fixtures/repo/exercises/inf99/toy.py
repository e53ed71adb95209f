import ctypes
import os


def first():
    return 1


def crash_prone():
    if os.environ.get("FAKE_CRASH") == "exit":
        os._exit(3)
    return ctypes.string_at(0)      # reads address 0: segmentation fault


def after():
    return 3
