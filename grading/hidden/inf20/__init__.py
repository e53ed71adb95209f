"""inf20 hidden tests (instructors only)."""
