"""Bias audit (`thrifty audit`, docs/audit.md): counterfactual invariance over identity terms, group metrics and the
Jigsaw unintended-bias AUCs on labelled data, and association tests on sentence embeddings."""
