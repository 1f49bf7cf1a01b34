"""Monitoring: `thrifty monitor`, recent traffic from the prediction log against the training data."""
