"""Tencent Cloud Live's legacy signature: `sign = md5(key + t)`, `t` being the signature's UNIX expiry. Pure.

Two protocols share it: the `Live_Tape_Start` calls highlight makes (signed with the API key) and the event
notifications Live sends to highlight (signed with the callback template's key). Neither owns it, so it lives
here, and both import it from here.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(key: str, t: int | str) -> str:
    """`md5(key + str(t))` as lowercase hex; `t` exactly as it is sent (a decimal number)."""
    return hashlib.md5((key + str(t)).encode(), usedforsecurity=False).hexdigest()


def verify(key: str, t: int | str, given: str) -> bool:
    """Whether `given` is the signature of `t` under `key`, compared in constant time (hex in any case)."""
    # ASCII only: a non-ASCII `given` cannot be a hex digest, and compare_digest refuses non-ASCII str.
    if not given.isascii():
        return False
    return hmac.compare_digest(given.lower().encode(), sign(key, t).encode())
