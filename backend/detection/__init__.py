"""Semi-automatic stage: the project's box detector (training, versions) and its pre-filled masks."""
