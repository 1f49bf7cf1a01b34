"""The run folder: claiming it, its status, checkpoints, and the manifest of the model it leaves."""
