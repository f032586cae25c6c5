"""Text side of the engine: the transformer encoder and its embedding cache."""
