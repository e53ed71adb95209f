"""inf21 · MQA & GQA: KV bytes per token, grouped-query attention without repeated K/V, MHA→GQA conversion."""
