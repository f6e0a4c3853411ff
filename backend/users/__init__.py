"""User accounts: created by admins (API) or on the command line (`dataengine create-user`)."""
