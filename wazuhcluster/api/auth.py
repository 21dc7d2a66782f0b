"""Who may call the API: JWT tokens, the signing key, and the per-IP login throttle.

Tokens are HS256 JWTs signed with a key kept in HOME/etc/api/jwt.key (mode 0600,
created on first start). They carry Wazuh's claims (``iss``, ``aud``, ``sub``, ``nbf``,
``exp``, ``run_as``, ``rbac_roles``, ``rbac_mode``) plus ``iat``; they expire after
``auth_token_exp_timeout`` seconds and stop working when their user is deleted, changes
password or roles, logs out, or one of their roles changes (see :class:`TokenAuthority`).
Time comes from an injected clock so tests can move it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from twisted.internet.defer import Deferred

from wazuhcluster.api.errors import ApiError, unauthorized
from wazuhcluster.api.rbac import Permissions
from wazuhcluster.api.security_store import SecurityDatabase, SecurityStore
from wazuhcluster.api.users import UserStore
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.threads import RunInThread, run_inline

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
    """Issues and checks API tokens against the users file and the security store.

    A token stops working when its user is deleted or changes password, when the user's
    roles change (unless the user may run_as), and when a revocation recorded in the
    security store covers it: a logout (the user's), a change to one of the user's roles
    (the role's), a change of security rules (every run_as token). Revocations are rows
    in the store, so they outlive a restart. :meth:`rotate` replaces the signing key,
    which invalidates every token at once.
    """

    def __init__(
        self,
        key: bytes,
        users: UserStore,
        timeout: int,
        clock: Callable[[], float],
        store: SecurityStore | None = None,
        key_path: Path | None = None,
    ) -> None:
        self.key = key
        self.users = users
        #: The lifetime from the <api> block; PUT /security/config may override it.
        self.configured_timeout = timeout
        self.timeout = timeout
        self.clock = clock
        self.store = store or SecurityStore(SecurityDatabase.memory(clock()), run_inline)
        self.key_path = key_path
        self.apply_settings()

    def apply_settings(self) -> None:
        """Take the token lifetime from the security store when one was set there."""
        self.timeout = self.store.state.token_timeout or self.configured_timeout

    def issue(self, user: str, roles: list[int] | None = None, run_as: bool = False) -> str:
        """A fresh token for ``user`` naming ``roles`` (by default the user's own)."""
        now = self.clock()
        if roles is None:
            found = self.users.get(user)
            roles = list(found.roles) if found is not None else []
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "nbf": int(now),
            "iat": now,
            "exp": int(now) + self.timeout,
            "sub": user,
            "run_as": run_as,
            "rbac_roles": roles,
            "rbac_mode": self.store.state.rbac_mode,
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
        roles = claims.get("rbac_roles", [])
        if not isinstance(roles, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in roles
        ):
            raise unauthorized(INVALID_TOKEN)
        run_as = claims.get("run_as") is True
        if not user.allow_run_as and (run_as or set(roles) != set(user.roles)):
            raise unauthorized(INVALID_TOKEN)
        state = self.store.state
        if iat <= state.revoked_users.get(sub, float("-inf")):
            raise unauthorized(INVALID_TOKEN)
        for role in {*roles, *user.roles}:
            if iat <= state.revoked_roles.get(role, float("-inf")):
                raise unauthorized(INVALID_TOKEN)
        if run_as and state.revoked_run_as is not None and iat <= state.revoked_run_as:
            raise unauthorized(INVALID_TOKEN)
        if claims.get("rbac_mode", "white") != state.rbac_mode:
            raise unauthorized("Token expired")
        return claims

    def permissions(self, claims: dict[str, Any]) -> Permissions:
        """The processed permissions of a checked token's roles."""
        return self.store.state.permissions(list(claims.get("rbac_roles", [])))

    def revoke(self, user: str) -> Deferred[None]:
        """Invalidate every token of ``user`` issued until now (logout), durably."""
        now, lifetime = self.clock(), self.timeout
        return self.store.change(lambda db: SecurityDatabase.revoke_user(db, user, now, lifetime))

    def revoke_roles(self, role_ids: list[int]) -> Deferred[None]:
        """Invalidate the tokens naming any of ``role_ids`` issued until now."""
        now, lifetime = self.clock(), self.timeout
        return self.store.change(
            lambda db: SecurityDatabase.revoke_roles(db, role_ids, now, lifetime)
        )

    def revoke_run_as(self) -> Deferred[None]:
        """Invalidate every run_as token issued until now."""
        now, lifetime = self.clock(), self.timeout
        return self.store.change(lambda db: SecurityDatabase.revoke_run_as(db, now, lifetime))

    async def rotate(self, run_in_thread: RunInThread) -> None:
        """A new signing key (written to its file when there is one): every token dies."""
        key = secrets.token_hex(KEY_BYTES).encode("ascii")
        if self.key_path is not None:
            await run_in_thread(write_key, self.key_path, key)
        self.key = key
        await self.store.change(SecurityDatabase.clear_revocations)

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


def write_key(path: Path, key: bytes) -> None:
    """Replace the signing key file atomically (mode 0600)."""
    write_atomically(path, key + b"\n", mode=KEY_MODE)


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
