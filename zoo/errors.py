"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for: unknown name, bad option, missing or corrupt file."""


class PluginError(Exception):
    """A plugin failed to load or returned something the registry cannot use."""


def one_line(text: str) -> str:
    """``text`` (a name read from a file or a folder) with control characters escaped: a newline in a
    class folder's name must not print a second line that reads like zoo's own."""
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in text)
