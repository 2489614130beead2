"""Text a person types, as every free-text input takes it.

Line breaks, tabs and any printable character of any script are text; NUL, the other C0 and C1
control characters and unpaired surrogates are not. Databases refuse some of them (PostgreSQL
cannot store NUL in text or JSONB), terminals and log viewers act on others, so they are
refused where a request enters, before anything is stored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

__all__ = ["LINE_PATTERN", "TEXT_PATTERN", "Line", "Text", "check_text"]

#: Free text (line breaks and tabs allowed), as a JSON Schema pattern.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
#: One line of text (no line breaks or tabs), as a JSON Schema pattern.
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def check_text(value: str) -> str:
    """``value`` if it is text (see the module docstring).

    Raises:
        ValueError: A control character or an unpaired surrogate.
    """
    for ch in value:
        code = ord(ch)
        if (code < 0x20 and ch not in "\t\n\r") or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000:
            raise ValueError("text without control characters")
    return value


#: Free text: bound its length where it is used (``Field(max_length=...)``).
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN), AfterValidator(check_text)]
#: One line of text (names, titles, identifiers typed by people).
Line = Annotated[str, StringConstraints(pattern=LINE_PATTERN), AfterValidator(check_text)]
