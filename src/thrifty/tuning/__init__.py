"""Hyperparameter search (Optuna)."""
