"""Training mechanics below the stages: selective fine-tuning, early stopping, in-stage checkpoints and resume."""
