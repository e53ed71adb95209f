"""inf30 · Continuous batching (reference)."""
