"""Plugins and what they provide: the specs they return, the hooks that return them, the catalogue that
finds them through entry points, and the one way every factory of theirs is called."""
