"""Text a person types, as every free-text input takes it.

Line breaks, tabs and any printable character of any script are text; NUL, the other C0 and C1
control characters, format characters (bidirectional overrides that make a name read backwards,
zero-width spaces that make two labels look the same), unpaired surrogates, private-use and
unassigned code points are not. Databases refuse some of them (PostgreSQL
cannot store NUL in text or JSONB), terminals and log viewers act on others, so they are
refused where a request enters, before anything is stored.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

__all__ = ["LINE_PATTERN", "TEXT_PATTERN", "Line", "Text", "check_line", "check_text"]

#: Free text (line breaks and tabs allowed), as a JSON Schema pattern.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
#: One line of text (no line breaks or tabs), as a JSON Schema pattern.
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


#: Joiners that spell words in several scripts (Persian, Indic, emoji sequences).
_JOINERS = frozenset("\u200c\u200d")
#: Unicode categories that are not text: controls, format characters (bidirectional overrides,
#: zero-width spaces, the BOM), surrogates, private use, unassigned code points.
_NOT_TEXT = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def check_text(value: str) -> str:
    """``value`` if it is text (see the module docstring).

    Raises:
        ValueError: A control or format character (bidirectional overrides, zero-width
            spaces), an unpaired surrogate, a private-use or unassigned code point.
    """
    for ch in value:
        if ch in "\t\n\r" or ch in _JOINERS:
            continue
        if unicodedata.category(ch) in _NOT_TEXT:
            raise ValueError("text without control or format characters")
    return value


def check_line(value: str) -> str:
    """``value`` if it is one line of text that is not only spaces (when not empty).

    Raises:
        ValueError: What :func:`check_text` refuses, a line or paragraph break of any kind,
            or nothing but spaces.
    """
    check_text(value)
    if any(unicodedata.category(ch) in ("Zl", "Zp") or ch in "\t\n\r" for ch in value):
        raise ValueError("one line of text")
    if value and not value.strip():
        raise ValueError("text, not only spaces")
    return value


#: Free text: bound its length where it is used (``Field(max_length=...)``).
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN), AfterValidator(check_text)]
#: One line of text (names, titles, identifiers typed by people).
Line = Annotated[str, StringConstraints(pattern=LINE_PATTERN), AfterValidator(check_line)]
