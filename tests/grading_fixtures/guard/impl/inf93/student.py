"""A student's module that takes the shortcuts the guard must stop (see ../../test_guarded.py)."""
import json
import threading
import time


def honest(x):
    return x + 1


def calls_dumps(x):
    return json.dumps(x)


def swallows(x):
    try:
        return json.dumps(x)
    except Exception:                    # hides the BannedError and returns something plausible
        return "[]"


def dumps_in_a_thread(x):
    out = []
    thread = threading.Thread(target=lambda: out.append(json.dumps(x)))
    thread.start()
    thread.join()
    return out[0] if out else None


def patches_the_clock():
    time.perf_counter = lambda: 0.0


def rebinds_the_timing_clock():
    import lab.timing
    lab.timing._perf_counter = lambda: 0.0      # the module-level reference, not time.perf_counter


def edits_the_seals_tables():
    import grading.guard.seal as seal_module
    seal_module.WATCHED.pop("time")                # so that a later patch of time.* would not be seen


def imports_solutions():
    import solutions.inf00.generate
    return solutions.inf00.generate
