"""Who may call the API: JWT tokens, the signing key, and the per-IP login throttle.

Tokens are HS256 JWTs signed with a key kept in HOME/etc/api/jwt.key (mode 0600,
created on first start). They carry Wazuh's claims (``iss``, ``aud``, ``sub``, ``nbf``,
``exp``, ``run_as``, ``rbac_roles``, ``rbac_mode``) plus ``iat``; they expire after
``auth_token_exp_timeout`` seconds and stop working when their user is deleted or changes
password. Time comes from an injected clock so tests can move it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from wazuhcluster.api.errors import ApiError, unauthorized
from wazuhcluster.api.users import UserStore

ISSUER = "wazuh"
AUDIENCE = "Wazuh API REST"
KEY_MODE = 0o600
KEY_BYTES = 32
MAX_TOKEN = 4096
INVALID_TOKEN = "Invalid token"


def load_or_create_key(path: Path) -> bytes:
    """The signing key at ``path``, created (random, mode 0600) if it does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    if path.stat().st_mode & 0o077:
        os.chmod(path, KEY_MODE)
    text = path.read_text("ascii")[:1024].strip()
    if len(text) < 2 * KEY_BYTES:
        raise ValueError(f"{path}: the API signing key is shorter than {2 * KEY_BYTES} hex digits")
    return text.encode("ascii")


class TokenAuthority:
    """Issues and checks API tokens."""

    def __init__(
        self, key: bytes, users: UserStore, timeout: int, clock: Callable[[], float]
    ) -> None:
        self.key = key
        self.users = users
        self.timeout = timeout
        self.clock = clock
        #: Per user, tokens issued before this time were revoked by a logout (kept in
        #: memory: after a restart they expire on their own within ``timeout``).
        self._revoked: dict[str, float] = {}

    def issue(self, user: str) -> str:
        """A fresh token for ``user``."""
        now = self.clock()
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "nbf": int(now),
            "iat": now,
            "exp": int(now) + self.timeout,
            "sub": user,
            "run_as": False,
            "rbac_roles": [1],
            "rbac_mode": "white",
        }
        return jwt.encode(claims, self.key, algorithm="HS256")

    def check(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raise a 401 :class:`ApiError` otherwise."""
        if len(token) > MAX_TOKEN:
            raise unauthorized(INVALID_TOKEN)
        try:
            # Times are checked below against the injected clock, not the system's.
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "nbf", "iat", "sub"],
                },
            )
        except jwt.PyJWTError:
            raise unauthorized(INVALID_TOKEN) from None
        now = self.clock()
        exp, nbf, iat, sub = claims["exp"], claims["nbf"], claims["iat"], claims["sub"]
        if not all(isinstance(value, int | float) for value in (exp, nbf, iat)):
            raise unauthorized(INVALID_TOKEN)
        if not isinstance(sub, str) or now >= exp or now < nbf - 1:
            raise unauthorized(INVALID_TOKEN)
        user = self.users.get(sub)
        if user is None or user.hash is None or iat < user.changed:
            raise unauthorized(INVALID_TOKEN)
        if iat <= self._revoked.get(sub, float("-inf")):
            raise unauthorized(INVALID_TOKEN)
        return claims

    def revoke(self, user: str) -> None:
        """Invalidate every token of ``user`` issued until now (logout)."""
        self._revoked[user] = self.clock()
        now = self.clock()
        for name, moment in list(self._revoked.items()):
            if now - moment > self.timeout:
                del self._revoked[name]

    def bearer(self, header: bytes | None) -> dict[str, Any]:
        """Check an ``Authorization`` header that must hold ``Bearer <token>``."""
        if not header:
            raise unauthorized("No authorization token provided")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise unauthorized("No authorization token provided")
        try:
            return self.check(token.strip().decode("ascii"))
        except UnicodeDecodeError:
            raise unauthorized(INVALID_TOKEN) from None


class LoginThrottle:
    """Blocks a source IP after too many failed logins, for ``block_time`` seconds.

    As in Wazuh, the window opens at an IP's first failure; once ``max_attempts``
    failures are counted the IP is refused until ``block_time`` has passed since that
    first failure. The table is bounded: when full, expired entries are dropped, then
    the oldest.
    """

    MAX_TRACKED = 10_000

    def __init__(self, max_attempts: int, block_time: float, clock: Callable[[], float]) -> None:
        self.max_attempts = max_attempts
        self.block_time = block_time
        self.clock = clock
        self._failures: dict[str, tuple[float, int]] = {}

    def _current(self, ip: str) -> tuple[float, int] | None:
        entry = self._failures.get(ip)
        if entry is not None and self.clock() - entry[0] >= self.block_time:
            del self._failures[ip]
            return None
        return entry

    def blocked(self, ip: str) -> bool:
        """Whether ``ip`` may not try to log in now."""
        entry = self._current(ip)
        return entry is not None and entry[1] >= self.max_attempts

    def failed(self, ip: str) -> None:
        """Count one failed login from ``ip``."""
        entry = self._current(ip)
        if entry is None:
            if len(self._failures) >= self.MAX_TRACKED:
                self._prune()
            self._failures[ip] = (self.clock(), 1)
        else:
            self._failures[ip] = (entry[0], entry[1] + 1)

    def _prune(self) -> None:
        now = self.clock()
        for ip, (start, _) in list(self._failures.items()):
            if now - start >= self.block_time:
                del self._failures[ip]
        while len(self._failures) >= self.MAX_TRACKED:
            del self._failures[next(iter(self._failures))]


class RequestLimiter:
    """At most ``per_minute`` requests in each 60-second window (0: no limit)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._window_start: float | None = None
        self._count = 0

    def allow(self) -> bool:
        """Count one request; False when the window's budget is spent."""
        if self.per_minute == 0:
            return True
        now = self.clock()
        if self._window_start is None or now - self._window_start >= 60:
            self._window_start, self._count = now, 0
        self._count += 1
        return self._count <= self.per_minute


__all__ = ["ApiError", "LoginThrottle", "RequestLimiter", "TokenAuthority", "load_or_create_key"]
