"""zoo's version, in its own module: every layer records it in what it writes."""
__version__ = "0.1.0"
