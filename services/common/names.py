"""Line, dataset and category names: one rule for every stage, so a name one accepts is never refused by another."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

# No '/' (it separates the parts of memory keys and bank folders), no spaces or control characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def shown(text: str, limit: int = 40) -> str:
    """A caller's rejected text as a message may quote it: at most `limit` characters, in double quotes, with
    anything unprintable and every backslash as '?' (no Python repr: its escapes read as paths, e.g. 'c:\\x00')."""
    cut = text[:limit]
    safe = "".join(c if c.isprintable() and c != "\\" else "?" for c in cut)
    return f'"{safe}"' + ("..." if len(text) > limit else "")


def check_name(value: str, field: str, *, required: bool = True) -> str:
    """The name, or INVALID_ARGUMENT naming the field: empty when required, or outside the rule."""
    if not value:
        if required:
            raise InvalidArgument("is required", field=field)
        return value
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{shown(value)} is not a valid name (letters, digits and . _ : -, starting with a letter or digit, "
            "at most 128 characters)",
            field=field,
        )
    return value


# Defect types: an operator's words ("Color defect") and an MMAD option's text ("Color defect.") name one type.
MAX_DEFECT_TYPE_CHARS = 64
_DEFECT_TYPE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_SEPARATORS = re.compile(r"[\s_\-]+")


def defect_type_key(text: str) -> str:
    """A defect type's canonical form: lower case, words joined by '_', a final period dropped ("Color defect." ->
    "color_defect"), so an operator's words and an MMAD option's text name the same type. "" when it is none."""
    words = _SEPARATORS.sub("_", text.strip().rstrip(".").strip().lower()).strip("_")
    return words if _DEFECT_TYPE.match(words) and len(words) <= MAX_DEFECT_TYPE_CHARS else ""


def check_defect_type(text: str, field: str = "defect_type") -> str:
    """The canonical type, or INVALID_ARGUMENT naming the field."""
    key = defect_type_key(text)
    if not key:
        raise InvalidArgument(
            f"{shown(text, MAX_DEFECT_TYPE_CHARS)} is not a defect type: use letters and digits, words separated "
            f"by spaces, '_' or '-' (at most {MAX_DEFECT_TYPE_CHARS} characters), e.g. 'crack' or 'color defect'",
            field=field,
        )
    return key
