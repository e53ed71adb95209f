"""Instructor-only hidden tests: other seeds and shapes, run by the grader, left out of the student release."""
