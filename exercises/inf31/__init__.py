"""inf31 · PagedAttention."""
