"""One file per schema revision of the prediction log, oldest first."""
