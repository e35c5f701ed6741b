"""apir.restore."""
