"""Bearer API keys in two scopes: ``read`` (lists) and ``write`` (events)."""

from __future__ import annotations

import hashlib
import hmac

from serving.api.settings import ApiSettings


class KeyRing:
    """API keys by scope. A presented key is compared with every configured key in constant
    time (sha256 digests, so neither content nor length leaks through timing).

    >>> ring = KeyRing.of(ApiSettings(read_keys="r1, both", write_keys="w1,both"))
    >>> sorted(ring.scopes("both")), sorted(ring.scopes("w1")), sorted(ring.scopes("nope"))
    (['read', 'write'], ['write'], [])
    """

    def __init__(self, read: str, write: str) -> None:
        self._digests = {
            scope: [_digest(k) for k in keys.split(",") if k.strip()]
            for scope, keys in (("read", read), ("write", write))
        }

    @classmethod
    def of(cls, api: ApiSettings) -> KeyRing:
        return cls(api.read_keys.get_secret_value(), api.write_keys.get_secret_value())

    def __bool__(self) -> bool:
        return any(self._digests.values())

    def scopes(self, presented: str) -> set[str]:
        token = _digest(presented)
        granted = set()
        for scope, digests in self._digests.items():
            match = False
            for digest in digests:  # no early exit: the time does not depend on which key matched
                match |= hmac.compare_digest(token, digest)
            if match:
                granted.add(scope)
        return granted


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.strip().encode()).digest()
