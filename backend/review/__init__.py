"""Review of sampled auto masks: the queue, the decisions, and the project's quality figure."""
