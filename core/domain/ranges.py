"""Numbers in ranges: the one rule and the one message for every numeric field."""

from __future__ import annotations

from core.domain.errors import ErrorCode, validation_error


def out_of_range(code: ErrorCode, field: str, constraint: str, value: object) -> Exception:
    """`constraint` reads `range=[1,8192] integer`; the message says it in words."""
    interval, _, kind = constraint.removeprefix("range=").partition(" ")
    what = "an " + kind if kind.startswith("integer") else "a number"
    words = f"{field} must be {what} in {interval.replace(',', ', ')}"
    actual = {"actual": value} if is_number(value) else {"actual_type": type(value).__name__}
    return validation_error(code, words, field=field, constraint=constraint, **actual)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
