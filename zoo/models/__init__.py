"""Models built by name from the catalogue's architectures and wrappers; nothing here reads a file."""
