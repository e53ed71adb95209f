"""The fake lab under repo/ is data for tests/test_grading.py (which grades a copy of it), not tests of
this repo: it holds a test that hangs and one that segfaults on purpose, so never collect it here.
guard/ is run by tests/test_guard.py in its own pytest process (some of its tests must fail); attacks/ is laid
over a copy of repo/ by tests/test_grader_attacks.py."""
collect_ignore = ["repo", "guard", "attacks"]
