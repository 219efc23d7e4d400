"""
API tokens: issued by C{POST /api/v1/auth}, valid until the process exits.
"""

import hashlib
import hmac
import uuid


class TooManyTokens(Exception):
    """
    The bound on live tokens is reached; no new token until a restart.
    """


class TokenStore:
    """
    Tokens in memory only.  A new token never invalidates older ones, so the
    number of live tokens is bounded to keep C{/api/v1/auth} from being used
    to exhaust memory.

    Look-ups go through SHA-256 digests, so the time a look-up takes says
    nothing useful about a stored token, and the final comparison is
    constant-time.
    """

    def __init__(self, maxTokens: int = 10_000) -> None:
        self.maxTokens = maxTokens
        self._digests: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self._digests)

    def issue(self) -> str:
        """
        @raise TooManyTokens: when L{maxTokens} tokens are live.
        """
        if len(self._digests) >= self.maxTokens:
            raise TooManyTokens(self.maxTokens)
        token = str(uuid.uuid4())
        digest = hashlib.sha256(token.encode("ascii")).digest()
        self._digests[digest] = digest
        return token

    def valid(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        stored = self._digests.get(digest, b"\0" * len(digest))
        return hmac.compare_digest(stored, digest) and digest in self._digests
