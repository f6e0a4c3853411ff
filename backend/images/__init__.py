"""Images: validated upload and folder import, content-hash storage, duplicates, files and thumbnails."""
