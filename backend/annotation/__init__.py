"""Annotation: claiming images with a lock, and saving, listing and deleting masks."""
