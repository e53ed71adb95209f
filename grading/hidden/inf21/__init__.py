"""inf21 hidden tests."""
