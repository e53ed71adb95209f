"""The fake lab's stand-in for the lab package: only what the grader's trusted cache needs."""
