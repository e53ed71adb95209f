"""inf20 · FlashAttention: online softmax, a Triton forward kernel, and the HBM traffic it saves."""
