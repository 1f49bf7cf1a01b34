"""Inference: loading a finished run and predicting labels with probabilities."""
