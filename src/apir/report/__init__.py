"""apir.report."""
