"""API security and settings: users file and command, tokens, throttles, signing key,
certificate, the ``<api>`` block, and the health reshaping."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from xml.etree.ElementTree import fromstring

import jwt
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import cheap_users
from wazuhcluster.api.auth import (
    AUDIENCE,
    ISSUER,
    LoginThrottle,
    RequestLimiter,
    TokenAuthority,
    load_or_create_key,
)
from wazuhcluster.api.certs import ApiCertificateError, ensure_certificate, server_context
from wazuhcluster.api.errors import ApiError
from wazuhcluster.api.health import format_status, health_items, ruleset_synced
from wazuhcluster.api.users import (
    UsersError,
    UserStore,
    add_user,
    delete_user,
    hash_password,
    list_users,
    main,
    parse_users,
    read_users,
    set_password,
    verify_password,
)
from wazuhcluster.config.api_settings import parse_api
from wazuhcluster.config.home import Home
from wazuhcluster.config.xmlconfig import ConfigError, Section


class PasswordTests(SynchronousTestCase):
    """Password hashes."""

    def test_hash_and_verify(self) -> None:
        """A hash verifies its password only, and salts differ between hashes."""
        first = hash_password("s3cret-pass", n=2**8)
        self.assertTrue(verify_password("s3cret-pass", first))
        self.assertFalse(verify_password("s3cret-pasS", first))
        self.assertNotEqual(first, hash_password("s3cret-pass", n=2**8))

    def test_malformed_or_abusive_hashes_never_verify(self) -> None:
        """Foreign formats, bad base64 and absurd costs are refused without hashing."""
        good = hash_password("pw-123456", n=2**8).split("$")
        for stored in (
            "",
            "plain",
            "bcrypt$x$y$z$a$b",
            "$".join([good[0], "1024", "8", "1", "!!", good[5]]),
            "$".join([good[0], str(2**30), "8", "1", good[4], good[5]]),
            "$".join([good[0], "1000", "8", "1", good[4], good[5]]),
        ):
            self.assertFalse(verify_password("pw-123456", stored), stored)


class UsersFileTests(SynchronousTestCase):
    """users.json management."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "etc" / "api" / "users.json"
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def test_add_set_delete_list(self) -> None:
        """Users are added, re-passworded (changed time moves) and deleted; file is 0600."""
        add_user(self.path, "alice", "first-password", self.clock)
        add_user(self.path, "bob", "second-password", self.clock)
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)
        self.assertEqual(list_users(self.path), ["alice", "bob"])
        store = UserStore(self.path)
        self.assertTrue(store.check("alice", "first-password"))
        self.now = 200.0
        set_password(self.path, "alice", "another-password", self.clock)
        self.assertEqual(read_users(self.path)["alice"].changed, 200.0)
        self.assertFalse(store.check("alice", "first-password"))
        self.assertTrue(store.check("alice", "another-password"))
        delete_user(self.path, "bob")
        self.assertEqual(list_users(self.path), ["alice"])
        self.assertFalse(store.check("bob", "second-password"))

    def test_refusals(self) -> None:
        """Duplicates, bad names, short passwords and unknown users are refused."""
        add_user(self.path, "alice", "first-password")
        for call in (
            lambda: add_user(self.path, "alice", "first-password"),
            lambda: add_user(self.path, "bad name", "first-password"),
            lambda: add_user(self.path, "carol", "short"),
            lambda: set_password(self.path, "nobody", "first-password"),
            lambda: delete_user(self.path, "nobody"),
        ):
            self.assertRaises(UsersError, call)

    def test_no_file_no_user(self) -> None:
        """Without a users file nobody can log in (there is no default password)."""
        store = UserStore(self.path)
        self.assertEqual(store.users(), {})
        self.assertFalse(store.check("wazuh", "wazuh"))

    def test_broken_file_lets_nobody_in(self) -> None:
        """A malformed users file is rejected by the parser and means no user for the API."""
        for data in (b"{", b"[]", b'{"users": {"a b": {}}}', b'{"users": {"a": {"hash": 5}}}'):
            self.assertRaises(UsersError, parse_users, data)
        self.path.parent.mkdir(parents=True)
        self.path.write_bytes(b"{not json")
        self.assertFalse(UserStore(self.path).check("alice", "whatever-pass"))

    def test_command_line(self) -> None:
        """api-user add/passwd/list/delete work on HOME/etc/api/users.json."""
        home = self.mktemp()
        output = io.StringIO()
        self.patch(sys, "stdout", output)
        self.patch(sys, "stdin", io.StringIO("a-long-password\n"))
        self.assertEqual(main(["--home", home, "add", "ops", "--password-stdin"]), 0)
        self.patch(sys, "stdin", io.StringIO("a-new-password\n"))
        self.assertEqual(main(["--home", home, "passwd", "ops", "--password-stdin"]), 0)
        self.assertEqual(main(["--home", home, "list"]), 0)
        self.assertIn("ops\n", output.getvalue())
        users = Path(home) / "etc" / "api" / "users.json"
        self.assertTrue(UserStore(users).check("ops", "a-new-password"))
        self.patch(sys, "stderr", io.StringIO())
        self.patch(sys, "stdin", io.StringIO("short\n"))
        self.assertEqual(main(["--home", home, "add", "dev", "--password-stdin"]), 1)
        self.assertEqual(main(["--home", home, "delete", "ops"]), 0)
        self.assertEqual(json.loads(users.read_text())["users"], {})


class TokenTests(SynchronousTestCase):
    """JWT issue and check."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.users_path = Path(self.mktemp()) / "users.json"
        cheap_users(self.users_path, {"alice": "first-password"}, changed=10.0)
        self.key = load_or_create_key(Path(self.mktemp()) / "jwt.key")
        self.tokens = TokenAuthority(self.key, UserStore(self.users_path), 900, self.clock.seconds)

    def test_claims_and_expiry(self) -> None:
        """Tokens carry Wazuh's claims and stop working after the timeout."""
        token = self.tokens.issue("alice")
        claims = jwt.decode(
            token, self.key, algorithms=["HS256"], audience=AUDIENCE, options={"verify_exp": False}
        )
        self.assertEqual(
            (claims["iss"], claims["sub"], claims["exp"] - claims["nbf"]), (ISSUER, "alice", 900)
        )
        self.assertEqual(self.tokens.check(token)["sub"], "alice")
        self.clock.advance(900)
        self.assertRaises(ApiError, self.tokens.check, token)

    def test_foreign_and_tampered_tokens(self) -> None:
        """Other keys, algorithms, audiences and oversized tokens are refused with 401."""
        now = int(self.clock.seconds())
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "nbf": now,
            "iat": now,
            "exp": now + 60,
            "sub": "alice",
        }
        bad = [
            jwt.encode(base, b"another-key-of-sufficient-length!", algorithm="HS256"),
            jwt.encode({**base, "aud": "elsewhere"}, self.key, algorithm="HS256"),
            jwt.encode({**base, "sub": 5}, self.key, algorithm="HS256"),
            jwt.encode({k: v for k, v in base.items() if k != "exp"}, self.key, algorithm="HS256"),
            jwt.encode({**base, "nbf": now + 100}, self.key, algorithm="HS256"),
            jwt.encode(base, None, algorithm="none"),
            "x" * 5000,
        ]
        for token in bad:
            with self.assertRaises(ApiError) as raised:
                self.tokens.check(token)
            self.assertEqual(raised.exception.status, 401)

    def test_password_change_and_deletion_revoke(self) -> None:
        """A token issued before the user's password changed, or of a deleted user, fails."""
        token = self.tokens.issue("alice")
        self.clock.advance(5)
        cheap_users(self.users_path, {"alice": "second-password"}, changed=self.clock.seconds())
        self.assertRaises(ApiError, self.tokens.check, token)
        fresh = self.tokens.issue("alice")
        self.assertEqual(self.tokens.check(fresh)["sub"], "alice")
        cheap_users(self.users_path, {})
        self.assertRaises(ApiError, self.tokens.check, fresh)

    def test_bearer_header(self) -> None:
        """Only ``Bearer <token>`` headers are accepted."""
        token = self.tokens.issue("alice")
        self.assertEqual(self.tokens.bearer(f"Bearer {token}".encode())["sub"], "alice")
        for header in (None, b"", b"Basic abc", b"Bearer ", b"Bearer \xff\xfe"):
            self.assertRaises(ApiError, self.tokens.bearer, header)

    def test_key_file_is_private_and_stable(self) -> None:
        """The key is created 0600 once, tightened if loosened, and refused when too short."""
        path = Path(self.mktemp()) / "api" / "jwt.key"
        first = load_or_create_key(path)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        path.chmod(0o644)
        self.assertEqual(load_or_create_key(path), first)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        path.write_text("short")
        self.assertRaises(ValueError, load_or_create_key, path)


class ThrottleTests(SynchronousTestCase):
    """LoginThrottle and RequestLimiter."""

    def test_login_throttle_window(self) -> None:
        """An IP is blocked after max failures until block_time after its first failure."""
        clock = task.Clock()
        throttle = LoginThrottle(3, 300, clock.seconds)
        for _ in range(2):
            throttle.failed("10.0.0.1")
        self.assertFalse(throttle.blocked("10.0.0.1"))
        throttle.failed("10.0.0.1")
        self.assertTrue(throttle.blocked("10.0.0.1"))
        self.assertFalse(throttle.blocked("10.0.0.2"))
        clock.advance(299)
        self.assertTrue(throttle.blocked("10.0.0.1"))
        clock.advance(1)
        self.assertFalse(throttle.blocked("10.0.0.1"))

    def test_login_throttle_is_bounded(self) -> None:
        """The table of tracked IPs never exceeds its bound."""
        throttle = LoginThrottle(3, 300, task.Clock().seconds)
        throttle.MAX_TRACKED = 10
        for number in range(50):
            throttle.failed(f"10.0.0.{number}")
        self.assertLessEqual(len(throttle._failures), 10)

    def test_request_limiter(self) -> None:
        """At most N requests per 60-second window; 0 means no limit."""
        clock = task.Clock()
        limiter = RequestLimiter(3, clock.seconds)
        self.assertEqual([limiter.allow() for _ in range(4)], [True, True, True, False])
        clock.advance(60)
        self.assertTrue(limiter.allow())
        unlimited = RequestLimiter(0, clock.seconds)
        self.assertTrue(all(unlimited.allow() for _ in range(1000)))


class SettingsTests(SynchronousTestCase):
    """The <api> block."""

    def parse(self, xml: str | None) -> object:
        element = fromstring(xml) if xml else None
        return parse_api(Section(element, "test.conf", "api"), Home(Path("/var/wm")))

    def test_defaults(self) -> None:
        """No block: the API is off; an empty block: on with Wazuh's defaults."""
        self.assertFalse(self.parse(None).enabled)  # type: ignore[attr-defined]
        settings = self.parse("<api/>")
        self.assertTrue(settings.enabled)  # type: ignore[attr-defined]
        self.assertEqual(settings.port, 55000)  # type: ignore[attr-defined]
        self.assertEqual(settings.token_timeout, 900)  # type: ignore[attr-defined]
        self.assertEqual(settings.cert, Path("/var/wm/etc/api/server.crt"))  # type: ignore[attr-defined]
        self.assertEqual(settings.users_file, Path("/var/wm/etc/api/users.json"))  # type: ignore[attr-defined]

    def test_values_and_errors(self) -> None:
        """Options are read and validated; bad values are one-line ConfigErrors."""
        settings = self.parse(
            "<api><port>55001</port><bind_addr>127.0.0.1</bind_addr><cert>/x/c.pem</cert>"
            "<auth_token_exp_timeout>60</auth_token_exp_timeout><disabled>yes</disabled></api>"
        )
        self.assertEqual(settings.port, 55001)  # type: ignore[attr-defined]
        self.assertEqual(settings.cert, Path("/x/c.pem"))  # type: ignore[attr-defined]
        self.assertFalse(settings.enabled)  # type: ignore[attr-defined]
        for bad in (
            "<api><port>0</port></api>",
            "<api><bind_addr>host</bind_addr></api>",
            "<api><auth_token_exp_timeout>1</auth_token_exp_timeout></api>",
        ):
            self.assertRaises(ConfigError, self.parse, bad)


class CertificateTests(SynchronousTestCase):
    """The API's HTTPS certificate."""

    def test_self_signed_created_once(self) -> None:
        """A missing pair is created (key 0600) and then kept; TLS options load from it."""
        folder = Path(self.mktemp())
        cert, key = folder / "server.crt", folder / "server.key"
        self.assertTrue(ensure_certificate(cert, key, "master.example"))
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        before = cert.read_bytes()
        self.assertFalse(ensure_certificate(cert, key))
        self.assertEqual(cert.read_bytes(), before)
        self.assertIsNotNone(server_context(cert, key))

    def test_half_a_pair_is_an_error(self) -> None:
        """Only one of certificate and key present, or garbage, is refused."""
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "server.crt").write_text("garbage")
        self.assertRaises(
            ApiCertificateError, ensure_certificate, folder / "server.crt", folder / "server.key"
        )
        (folder / "server.key").write_text("garbage")
        self.assertRaises(
            ApiCertificateError, server_context, folder / "server.crt", folder / "server.key"
        )


class HealthShapeTests(SynchronousTestCase):
    """Reshaping the master's health report."""

    def test_times_become_iso_text(self) -> None:
        """POSIX times become ISO text; unset dates become n/a; other values stay."""
        status = format_status(
            {
                "last_keep_alive": 0.0,
                "last_check_integrity": {"date_end_master": None},
                "bytes_sent": 3,
            }
        )
        self.assertEqual(status["last_keep_alive"], "1970-01-01T00:00:00.000000Z")
        self.assertEqual(status["last_check_integrity"]["date_end_master"], "n/a")
        self.assertEqual(status["bytes_sent"], 3)

    def test_items_carry_counts_and_verdicts(self) -> None:
        """Every node gets n_active_agents and a verdict (ok when the node gives none)."""
        health = {
            "nodes": {
                "m": {"info": {"name": "m"}},
                "w": {
                    "info": {"name": "w"},
                    "status": {},
                    "verdict": {"state": "stale", "reasons": ["x"]},
                },
            }
        }
        items = health_items(health, {"w": 4})
        self.assertEqual(
            items[0],
            {
                "info": {"name": "m", "n_active_agents": 0},
                "verdict": {"state": "ok", "reasons": []},
            },
        )
        self.assertEqual(items[1]["info"]["n_active_agents"], 4)
        self.assertEqual(items[1]["verdict"]["state"], "stale")

    def test_ruleset_synced(self) -> None:
        """Synced needs a finished check, no running/failed/deferred sync, and a connection."""
        good = {
            "sync_integrity_free": True,
            "last_check_integrity": {"date_end_master": 5.0},
            "last_sync_integrity": {"date_start_master": 1.0, "date_end_master": 2.0},
        }
        self.assertTrue(ruleset_synced(good))
        self.assertFalse(ruleset_synced({**good, "sync_integrity_free": False}))
        self.assertFalse(ruleset_synced({**good, "last_check_integrity": {}}))
        self.assertFalse(ruleset_synced({**good, "disconnected_at": 3.0}))
        self.assertFalse(
            ruleset_synced(
                {**good, "last_sync_integrity": {"date_start_master": 3.0, "date_end_master": None}}
            )
        )
        self.assertFalse(ruleset_synced({**good, "last_sync_integrity": {"last_error": "boom"}}))
