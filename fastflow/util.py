"""Small helpers the library, the command line and the tools share: error text and size strings."""
from __future__ import annotations

from typing import Tuple

__all__ = ["first_line", "parse_size"]


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty): what
    a one-line error or a per-input failure reason shows."""
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


def parse_size(text: str, multiple: int = 1, what: str = "--size") -> Tuple[int, int]:
    """``"HEIGHTxWIDTH"`` -> (height, width), both positive multiples of ``multiple``; a ValueError
    naming ``what`` and the expected form otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{what} must look like 384x512 (HEIGHTxWIDTH), got {text!r}") from None
    if h < 1 or w < 1 or h % multiple or w % multiple:
        rule = "positive" if multiple == 1 else f"positive multiples of {multiple}"
        raise ValueError(f"{what} {text}: height and width must be {rule}")
    return h, w
