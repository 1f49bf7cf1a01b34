"""Optimiser and schedules: AdamW set up the way the loop wants it, warmup/decay, when to evaluate."""
