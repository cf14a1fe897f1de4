"""Line, dataset and category names: one rule for every stage, so a name one accepts is never refused by another."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

# No '/' (it separates the parts of memory keys and bank folders), no spaces or control characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_name(value: str, field: str, *, required: bool = True) -> str:
    """The name, or INVALID_ARGUMENT naming the field: empty when required, or outside the rule."""
    if not value:
        if required:
            raise InvalidArgument("is required", field=field)
        return value
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{value[:40]!r} is not a valid name (letters, digits and . _ : -, starting with a letter or digit, "
            "at most 128 characters)",
            field=field,
        )
    return value
