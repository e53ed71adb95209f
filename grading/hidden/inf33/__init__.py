"""inf33 hidden tests."""
