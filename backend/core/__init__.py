"""Configuration, database engine/sessions and password/token security shared by every domain."""
