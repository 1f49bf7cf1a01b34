"""Serving: the prediction server (`thrifty serve`), its dynamic batcher, metrics and prediction log."""
