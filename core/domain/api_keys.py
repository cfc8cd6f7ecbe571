"""The one check of an API key, for every face that asks for one (HTTP, WebSocket, gRPC)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence


def is_known_key(given: str | None, keys: Sequence[str]) -> bool:
    """Whether `given` (surrounding spaces ignored) is one of `keys`. Every key is compared, each
    in constant time, so the time taken says nothing about which key, or how much of one, matched."""
    if not given or not given.strip():
        return False
    offered = given.strip().encode()
    match = False
    for key in keys:
        match |= hmac.compare_digest(offered, key.encode())
    return match
