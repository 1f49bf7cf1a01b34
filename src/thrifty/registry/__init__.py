"""The model registry: which versions of a fine-tuned model exist and which one is live (MLflow's Model Registry)."""
