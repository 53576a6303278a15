"""twolane: two serving lanes for text classification."""
