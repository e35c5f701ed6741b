"""apir.data."""
