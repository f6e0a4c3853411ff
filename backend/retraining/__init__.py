"""Retraining rounds: train the model on a project's collected masks, evaluate, register, promote."""
