"""Planning a run before it starts: fitting it into a budget, recommending a model and strategy."""
