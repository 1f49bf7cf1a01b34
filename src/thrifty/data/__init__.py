"""Data: reading files, cleaning and splitting them, tokenising and batching."""
