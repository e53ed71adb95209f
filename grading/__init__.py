"""The lab's grader (`python -m grading`, see grading/README.md) and the tools beside it.

Grader modules: runner (one pytest process per topic: its command, environment and records), processes
(starting, logging, time-limiting and killing those processes; Ctrl-C and SIGTERM), plugin (per-test records written
from inside pytest), hardware (what the run saw), rubric (the points table), score (points and
statuses), scorecard (the one document every output renders), report (terminal, Markdown),
export (JSON, Gradescope, JUnit). forkserver forks the instructors' speed processes from a warm server
(gpu_check, unless `--fresh`); a submission's topics never use it.
"""
