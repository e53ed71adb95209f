"""inf30 hidden tests."""
