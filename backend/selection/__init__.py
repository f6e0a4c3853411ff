"""Which image to annotate next (issue 18): selection strategies, their scores and their ranks."""
