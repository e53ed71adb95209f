"""inf33 · Prefix caching (reference)."""
