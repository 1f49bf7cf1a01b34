"""Bundled data: a small CC BY 4.0 Banking77 sample so the default job runs without ../shared."""
