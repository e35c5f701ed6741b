"""apir.evaluate."""
