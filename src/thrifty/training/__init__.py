"""Training: the run folder, optimisation, checkpoints, and the training loop itself."""
