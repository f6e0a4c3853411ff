"""HTTP plumbing shared by every router: dependencies (`deps.py`)."""
