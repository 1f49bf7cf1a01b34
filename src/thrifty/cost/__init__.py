"""Cost: FLOPs counted on the meta device (estimates, budgets and prices build on it)."""
