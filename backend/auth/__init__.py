"""Password login returning a bearer token."""
