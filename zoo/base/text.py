"""Words for numbers in what zoo prints."""
from __future__ import annotations


def counted(count: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``: a count with its noun, plural where English wants one."""
    plural = word + ("es" if word.endswith(("s", "x")) else "s")  # process, box; epoch
    return f"{count:,} {word if count == 1 else plural}"
