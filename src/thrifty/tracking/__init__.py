"""Experiment tracking beyond TensorBoard (MLflow)."""
