"""API users: HOME/etc/api/users.json, password hashing, and the ``api-user`` command.

The file is the operator's (mode 0600, written atomically)::

    {"version": 1, "users": {"alice": {"hash": "scrypt$16384$8$1$<salt>$<digest>",
                                       "changed": 1764000000.0, "id": 100,
                                       "roles": [1], "allow_run_as": false}}}

Passwords are hashed with scrypt (hashlib) and a random salt; the cost parameters are
kept in each hash so they can be raised later. There is no default user: until the
operator adds one with ``wazuh-cluster-control api-user add NAME`` no login works.
``changed`` is when the user's password last changed; the API refuses tokens issued
before it, so changing a password or deleting a user revokes their tokens.

``id`` names the user in RBAC resources (``user:id:100``; ids from 100, as Wazuh numbers
the users it did not ship); ``roles`` are the user's role ids in order (see
:mod:`wazuhcluster.api.rbac`); ``allow_run_as`` lets the user log in through
``/security/user/authenticate/run_as``. An entry written before roles existed has no
``roles`` and counts as an administrator (role 1), as every user then was; a missing
``id`` is given the next free one when the file is read.
"""

from __future__ import annotations

import argparse
import base64
import functools
import getpass
import hashlib
import hmac
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import evolve, frozen

from wazuhcluster.api.rbac import DEFAULT_ROLES
from wazuhcluster.config.api_settings import api_dir
from wazuhcluster.config.home import DEFAULT_HOME, Home
from wazuhcluster.util.files import write_atomically

USERS_MODE = 0o600
MAX_USERS_FILE = 1024 * 1024
MAX_USERS = 1000
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: The role of users written before roles existed (Wazuh's administrator).
ADMINISTRATOR_ROLE = 1
#: The first id given to a user (ids up to 99 are Wazuh's reserved ones).
FIRST_USER_ID = 100
MAX_ROLES_PER_USER = 256
#: scrypt cost: about 16 MiB and a few tens of milliseconds per hash.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_N = 2**20
_MAXMEM = 256 * 1024 * 1024


class UsersError(ValueError):
    """A users file or a user operation the API refuses; the text says why."""


def user_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid API user name, or None."""
    if USER_NAME.fullmatch(name) is None:
        return "a user name has 1 to 64 letters, digits or . _ @ -"
    return None


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused, or None."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A self-describing scrypt hash of ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` result)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return False
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    if not 8 <= len(salt) <= 64 or not 16 <= len(expected) <= 64:
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=_MAXMEM
    )
    return hmac.compare_digest(digest, expected)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user is unknown, so a wrong name costs as long as a wrong
    password (made on first use, not at import)."""
    return hash_password(secrets.token_hex(16))


@frozen
class User:
    """One API user."""

    name: str
    hash: str | None
    changed: float
    id: int = 0
    roles: tuple[int, ...] = (ADMINISTRATOR_ROLE,)
    allow_run_as: bool = False

    def public(self) -> dict[str, Any]:
        """The user as the API shows it (no hash)."""
        return {
            "id": self.id,
            "username": self.name,
            "allow_run_as": self.allow_run_as,
            "roles": list(self.roles),
        }


def _number(users: dict[str, User]) -> dict[str, User]:
    """Give users without an id the next free ones, in file order."""
    next_id = max([FIRST_USER_ID - 1, *(user.id for user in users.values())]) + 1
    for name, user in users.items():
        if user.id <= 0:
            users[name] = evolve(user, id=next_id)
            next_id += 1
    return users


def parse_users(data: bytes) -> dict[str, User]:
    """Parse and validate a users file; raise :class:`UsersError` when malformed."""
    if len(data) > MAX_USERS_FILE:
        raise UsersError(f"users file larger than {MAX_USERS_FILE} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UsersError(f"users file is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("users"), dict):
        raise UsersError('users file must be {"version": 1, "users": {...}}')
    entries: dict[str, Any] = document["users"]
    if len(entries) > MAX_USERS:
        raise UsersError(f"more than {MAX_USERS} users")
    users: dict[str, User] = {}
    for name, entry in entries.items():
        problem = user_name_problem(name)
        if problem is not None:
            raise UsersError(f"user {name[:64]!r}: {problem}")
        if not isinstance(entry, dict):
            raise UsersError(f"user {name!r}: entry must be an object")
        stored = entry.get("hash")
        changed = entry.get("changed", 0.0)
        if stored is not None and (not isinstance(stored, str) or len(stored) > 512):
            raise UsersError(f"user {name!r}: hash must be a string")
        if isinstance(changed, bool) or not isinstance(changed, int | float):
            raise UsersError(f"user {name!r}: changed must be a number")
        user_id = entry.get("id", 0)
        roles = entry.get("roles", [ADMINISTRATOR_ROLE])
        run_as = entry.get("allow_run_as", False)
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 0:
            raise UsersError(f"user {name!r}: id must be a positive integer")
        if (
            not isinstance(roles, list)
            or len(roles) > MAX_ROLES_PER_USER
            or not all(isinstance(r, int) and not isinstance(r, bool) for r in roles)
        ):
            raise UsersError(f"user {name!r}: roles must be a list of role ids")
        if not isinstance(run_as, bool):
            raise UsersError(f"user {name!r}: allow_run_as must be true or false")
        users[name] = User(name, stored, float(changed), user_id, tuple(roles), run_as)
    if len({user.id for user in users.values() if user.id}) != sum(
        1 for user in users.values() if user.id
    ):
        raise UsersError("two users have the same id")
    return _number(users)


def read_users(path: Path) -> dict[str, User]:
    """The users in ``path``; a missing file holds no user."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_USERS_FILE + 1)
    except FileNotFoundError:
        return {}
    return parse_users(data)


def write_users(path: Path, users: dict[str, User]) -> None:
    """Replace the users file atomically, readable by its owner only."""
    document = {
        "version": 1,
        "users": {
            user.name: {
                "hash": user.hash,
                "changed": user.changed,
                "id": user.id,
                "roles": list(user.roles),
                "allow_run_as": user.allow_run_as,
            }
            for user in sorted(_number(dict(users)).values(), key=lambda user: user.name)
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(
        path,
        (json.dumps(document, indent=2) + "\n").encode("utf-8"),
        mode=USERS_MODE,
        skip_identical=True,
    )


def add_user(
    path: Path,
    name: str,
    password: str,
    clock: Callable[[], float] = time.time,
    roles: Sequence[int] = (ADMINISTRATOR_ROLE,),
    hashed: str | None = None,
) -> User:
    """Add a user with ``roles``; refuse an existing name, a bad name or a weak password.

    ``hashed`` is the password's hash when the caller already made it (off the reactor).
    """
    for problem in (user_name_problem(name), password_problem(password)):
        if problem is not None:
            raise UsersError(problem)
    users = read_users(path)
    if name in users:
        raise UsersError(f"user {name!r} already exists")
    if len(users) >= MAX_USERS:
        raise UsersError(f"already {MAX_USERS} users")
    users[name] = User(name, hashed or hash_password(password), clock(), roles=tuple(roles))
    users = _number(users)
    write_users(path, users)
    return users[name]


def update_user(path: Path, name: str, **changes: Any) -> User:
    """Change fields of one user (``roles``, ``allow_run_as``, ``hash`` and ``changed``)."""
    users = read_users(path)
    if name not in users:
        raise UsersError(f"no user {name!r}")
    users[name] = evolve(users[name], **changes)
    write_users(path, users)
    return users[name]


def drop_role(path: Path, role_ids: Sequence[int]) -> None:
    """Take deleted roles out of every user's list."""
    users = read_users(path)
    gone = set(role_ids)
    changed = {
        name: evolve(user, roles=tuple(r for r in user.roles if r not in gone))
        for name, user in users.items()
        if gone.intersection(user.roles)
    }
    if changed:
        users.update(changed)
        write_users(path, users)


def number_users(path: Path) -> None:
    """Write ids and roles into entries that lack them (older files), if there are any."""
    try:
        data = path.read_bytes()[: MAX_USERS_FILE + 1]
    except FileNotFoundError:
        return
    users = parse_users(data)
    entries = json.loads(data.decode("utf-8"))["users"]
    if any({"id", "roles", "allow_run_as"} - set(entry) for entry in entries.values()):
        write_users(path, users)


def set_password(
    path: Path, name: str, password: str, clock: Callable[[], float] = time.time
) -> None:
    """Change a user's password (revoking the tokens issued before)."""
    problem = password_problem(password)
    if problem is not None:
        raise UsersError(problem)
    users = read_users(path)
    if name not in users:
        raise UsersError(f"no user {name!r}")
    users[name] = evolve(users[name], hash=hash_password(password), changed=clock())
    write_users(path, users)


def delete_user(path: Path, name: str) -> None:
    """Remove a user (their tokens stop working at once)."""
    users = read_users(path)
    if users.pop(name, None) is None:
        raise UsersError(f"no user {name!r}")
    write_users(path, users)


def list_users(path: Path) -> list[str]:
    """The user names, sorted."""
    return sorted(read_users(path))


class UserStore:
    """The API's view of the users file, re-read when the file changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        """The current users (a broken file counts as no user, so nobody gets in)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return self._users
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            try:
                self._users = read_users(self.path)
            except (OSError, UsersError):
                self._users = {}
            self._stamp = stamp
        return self._users

    def get(self, name: str) -> User | None:
        """The user called ``name``, if any."""
        return self.users().get(name)

    def by_id(self, user_id: int) -> User | None:
        """The user whose id is ``user_id``, if any."""
        return next((user for user in self.users().values() if user.id == user_id), None)

    def check(self, name: str, password: str) -> bool:
        """Whether ``name``/``password`` are valid credentials (slow: run it in a thread)."""
        user = self.get(name)
        if user is None or user.hash is None:
            verify_password(password, _dummy_hash())
            return False
        return verify_password(password, user.hash)


# --- command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """``wazuh-cluster-control api-user``: manage the REST API's users."""
    parser = argparse.ArgumentParser(
        prog="wazuh-cluster-control api-user", description="Manage the REST API users."
    )
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="the master's home directory")
    actions = parser.add_subparsers(dest="action", required=True)
    for action, text in (("add", "add a user"), ("passwd", "set a user's password")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name")
        sub.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
        if action == "add":
            sub.add_argument(
                "--role",
                action="append",
                help="a role name or id (repeatable; default: administrator)",
            )
    actions.add_parser("delete", help="delete a user").add_argument("name")
    actions.add_parser("list", help="list the users")
    return parser


def _role_ids(names: Sequence[str]) -> list[int]:
    """Role ids from names of Wazuh's default roles or from numbers."""
    by_name = {name: role_id for role_id, name, _ in DEFAULT_ROLES}
    found = []
    for name in names:
        if name.isdigit():
            found.append(int(name))
        elif name in by_name:
            found.append(by_name[name])
        else:
            raise UsersError(f"unknown role {name!r} (use an id for roles made through the API)")
    return found


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise UsersError("the passwords differ")
    return first


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``api-user add|passwd|delete|list``; return the exit status."""
    args = build_parser().parse_args(argv)
    path = api_dir(Home(Path(args.home))) / "users.json"
    try:
        if args.action == "add":
            roles = _role_ids(args.role or ["administrator"])
            add_user(path, args.name, _read_password(args.password_stdin), roles=roles)
            print(f"User {args.name} added.")
        elif args.action == "passwd":
            set_password(path, args.name, _read_password(args.password_stdin))
            print(f"Password of {args.name} changed; their tokens are revoked.")
        elif args.action == "delete":
            delete_user(path, args.name)
            print(f"User {args.name} deleted.")
        else:
            for name in list_users(path):
                print(name)
    except (UsersError, OSError) as error:
        print(f"api-user: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
