"""Models: finding, loading and describing pre-trained transformers."""
