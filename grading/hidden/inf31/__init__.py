"""inf31 hidden tests."""
