"""Fully automatic stage: the automatic mask generator over a project's images, as a job."""
