"""inf23 · Long context: RoPE scaling and sliding-window attention with a ring-buffer KV cache."""
