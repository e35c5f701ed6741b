"""apir.train."""
