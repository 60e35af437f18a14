"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for: unknown name, bad option, missing or corrupt file."""


class PluginError(Exception):
    """A plugin failed to load or returned something the registry cannot use."""
