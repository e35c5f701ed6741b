"""apir.models."""
