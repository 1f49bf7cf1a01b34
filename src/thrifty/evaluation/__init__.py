"""Evaluation: logits on a data set, classification metrics, plots."""
