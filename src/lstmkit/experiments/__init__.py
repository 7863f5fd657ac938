"""Ready-made experiments built from tasks and the trainer: the demo and the results tables."""
