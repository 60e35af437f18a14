"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for: unknown name, bad option, missing or corrupt file."""


class PluginError(Exception):
    """A plugin failed to load or returned something the registry cannot use."""


def one_line(text: str) -> str:
    """``text`` (a name read from a file or a folder) with control characters escaped: a newline in a
    class folder's name must not print a second line that reads like zoo's own."""
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in text)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, escaped; "" when it has none (timm raises bare
    ``AssertionError``s)."""
    return next((one_line(line.strip()) for line in str(exc).splitlines() if line.strip()), "")


def described(exc: BaseException) -> str:
    """``"TypeError: the first line"``, or the type alone for an exception without a message."""
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
