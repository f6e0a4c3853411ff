"""Webhooks: a project's events (image done, mask accepted, job finished or failed, model version
promoted) POSTed to the URLs its managers register, signed, retried, and logged per delivery."""
