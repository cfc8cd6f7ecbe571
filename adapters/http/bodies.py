"""Request bodies read with their limits checked before they are parsed: a JSON body's size,
media type and nesting depth; a voice upload's multipart parts, text fields kept as bytes until
they are decoded as strict UTF-8 (a lenient parser would turn bad bytes into Latin-1 text)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error

MAX_JSON_BYTES = 1 << 20  # far above the largest valid speech request (10,000 escaped emoji: 120 kB)
MAX_JSON_DEPTH = 32  # a speech request nests 2 deep
JSON_TYPES = ("application/json",)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def require_media_type(content_type: str | None, allowed: tuple[str, ...]) -> None:
    """415 for anything else: a browser sends text/plain or form bodies cross-origin without
    asking first, and they must never start work."""
    found = media_type(content_type)
    if found not in allowed:
        raise DomainError(ErrorType.VALIDATION, ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                          f"send the body as {' or '.join(allowed)} (Content-Type: {allowed[0]}), not "
                          f"{found or 'no Content-Type'}",
                          {"field": "Content-Type", "constraint": "one_of", "actual": found, "allowed": list(allowed)})


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int, what: str) -> bytes:
    """The whole body, refused (413) as soon as it passes `limit`: from its Content-Length when
    it gives one, else while it arrives (chunked bodies)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit, what)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _too_large(len(body), limit, what)
    return bytes(body)


def _too_large(size: int, limit: int, what: str) -> DomainError:
    return validation_error(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} is at most {limit} bytes", field="body",
                            constraint=f"max_bytes={limit}", actual_bytes=size)


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN or Infinity literals, valid UTF-8), at most MAX_JSON_DEPTH deep:
    the depth is measured before parsing, so no nesting reaches the parser's recursion."""
    depth = nesting_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise validation_error(ErrorCode.INVALID_INPUT, f"the body nests {depth} levels deep; at most "
                               f"{MAX_JSON_DEPTH} are accepted", field="body", constraint=f"max_depth={MAX_JSON_DEPTH}",
                               actual=depth)
    try:
        return json.loads(body.decode("utf-8") if body else "null", parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise validation_error(ErrorCode.INVALID_INPUT, "the body is not JSON", field="body",
                               constraint="type=json") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects, outside strings (escapes honoured)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


# -- multipart ---------------------------------------------------------------------------------


def multipart_parts(body: bytes, content_type: str | None) -> dict[str, tuple[bytes, str | None]]:
    """`name -> (bytes, filename or None)` of a multipart/form-data body; a repeated name keeps
    its first part. Raises a validation error (INVALID_INPUT) for a body that is not one."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if not boundary:
        raise _not_multipart()
    parts: dict[str, tuple[bytes, str | None]] = {}
    current: dict[str, Any] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["field"] = current.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["value"] = current.get("value", b"") + data[start:end]

    def on_header_end() -> None:
        current.setdefault("headers", {})[current.pop("field", b"").lower()] = current.pop("value", b"")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current.setdefault("data", bytearray()).extend(data[start:end])

    def on_part_end() -> None:
        headers = current.get("headers", {})
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name")
        if name is not None:
            filename = disposition.get(b"filename")
            key = name.decode("utf-8", "replace")
            parts.setdefault(key, (bytes(current.get("data", b"")),
                                   filename.decode("utf-8", "replace") if filename is not None else None))
        current.clear()

    parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end, "on_part_data": on_part_data,
                                        "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except Exception:
        raise _not_multipart() from None
    return parts


def utf8_field(value: bytes, field: str, code: ErrorCode) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise validation_error(code, f"{field} is not valid UTF-8 (byte {error.start})", field=field,
                               constraint="utf-8") from None


def _not_multipart() -> DomainError:
    return validation_error(ErrorCode.INVALID_INPUT, "send multipart/form-data with the fields file, name and "
                            "transcript", field="body", constraint="multipart/form-data")
