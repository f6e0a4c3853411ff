"""Projects and their members: the unit of access control."""
