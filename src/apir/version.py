"""The package version, in a module of its own so that any module can import it without importing
``apir`` (whose lazy ``restore_array`` would otherwise close an import cycle)."""

__version__ = "0.1.0"
