"""The API's users, roles and revocations durable in etcd: published before an API change
is answered (503 when etcd refuses), and written back on a new master's disk before its
API opens. Deterministic: an in-memory etcd with a real election, temporary homes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import USER, ApiHarness
from tests.test_failover_api_writes import PREFIX, Feature
from tests.test_failover_election import MemoryEtcd
from tests.test_failover_files import MemoryFiles
from tests.test_failover_roles import Node
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.security_store import SecurityDatabase
from wazuhcluster.api.service import build_site
from wazuhcluster.failover.files import DurableFiles
from wazuhcluster.master.durable_security import DATABASE, USERS, SecurityPublisher, read_security
from wazuhcluster.roles.security_takeover import take_over_security
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

STRONG = "Failover-Passw0rd!"


class ApiSecurityDurableTests(SynchronousTestCase):
    """Changes to users and revocations through the API are in etcd when answered."""

    def setUp(self) -> None:
        """n1 leads; the API's security changes publish through a SecurityPublisher."""
        self.clock = Clock()
        self.etcd = MemoryEtcd(self.clock)
        self.leader = Node(self.etcd, self.clock, "n1").start(self)
        self.clock.advance(0)
        self.store = DurableFiles(self.leader.leadership, self.etcd, PREFIX + "api-")
        self.store.known = {}  # as after the take-over of an etcd without them
        self.api = ApiHarness(self, token_timeout=36000)
        publisher = SecurityPublisher(
            self.store, self.api.settings.api_dir, run_inline, ClusterLog("Master", "Test")
        )
        hooks = ApiHooks(security_changed=publisher.publish)
        self.api.site, self.api.resource = build_site(
            self.api.settings,
            self.api.node,
            Feature(self.api.registry),
            self.api.clock.seconds,
            run_inline,
            hooks,
            "api-host",
        )
        self.addCleanup(self.api.resource.endpoints.tokens.store.close)

    def etcd_files(self) -> dict[str, bytes]:
        """The security files etcd holds, by name."""
        files = (PREFIX + "api-files/").encode()
        return {
            key[len(files) :].decode(): kv.value
            for key, kv in self.etcd.keys.items()
            if key.startswith(files)
        }

    def test_user_and_revocation_are_in_etcd_when_answered(self) -> None:
        """A user created through the API is in etcd's users.json; a logout's revocation
        is in etcd's rbac.db; once etcd refuses, a new user answers 503."""
        made = self.api.call(
            "POST", "/security/users", {"username": "operator1", "password": STRONG}
        )
        self.assertEqual(made.status, 200, made.raw)
        self.assertIn(b'"operator1"', self.etcd_files()[USERS])
        token = self.api.token()
        answer = self.api.call("DELETE", "/security/user/authenticate", token=token)
        self.assertEqual(answer.status, 200, answer.raw)
        image = Path(self.mktemp())
        image.write_bytes(self.etcd_files()[DATABASE])
        database = SecurityDatabase.open(image, 0.0)
        self.addCleanup(database.close)
        self.assertIn(USER, database.snapshot().revoked_users)
        self.api.clock.advance(2)  # a login after the logout's instant is valid again
        self.etcd._drop_lease(self.leader.leadership._lease)  # type: ignore[arg-type]
        refused = self.api.call(
            "POST",
            "/security/users",
            {"username": "late", "password": STRONG},
            token=self.api.login().json["data"]["token"],
        )
        self.assertEqual(refused.status, 503, refused.raw)
        self.assertNotIn(b'"late"', self.etcd_files()[USERS])


class TakeOverSecurityTests(SynchronousTestCase):
    """A new master puts etcd's users.json and rbac.db in its API folder."""

    def setUp(self) -> None:
        """A source API folder with a user and a revocation, and a target one."""
        self.source = Path(self.mktemp())
        self.source.mkdir()
        (self.source / USERS).write_bytes(b'{"users": [{"name": "ops"}]}\n')
        database = SecurityDatabase.open(self.source / DATABASE, 100.0)
        with database.transaction() as db:
            SecurityDatabase.revoke_user(db, "ops", 100.0, 900.0)
        database.close()
        self.target = Path(self.mktemp())
        self.target.mkdir()
        (self.target / USERS).write_bytes(b'{"users": []}\n')
        (self.target / (DATABASE + "-wal")).write_bytes(b"stale")
        self.log = ClusterLog("Master", "Failover")

    def take_over(self, store: Any) -> None:
        """Run the take-over into the target folder."""
        self.successResultOf(
            ensureDeferred(take_over_security(store, self.target, run_inline, self.log))
        )

    def test_etcd_wins(self) -> None:
        """users.json and rbac.db come from etcd, the stale WAL goes, the revocation holds."""
        store = MemoryFiles(read_security(self.source))
        self.take_over(store)
        self.assertEqual((self.target / USERS).read_bytes(), (self.source / USERS).read_bytes())
        self.assertFalse((self.target / (DATABASE + "-wal")).exists())
        database = SecurityDatabase.open(self.target / DATABASE, 200.0)
        self.addCleanup(database.close)
        self.assertIn("ops", database.snapshot().revoked_users)

    def test_bad_database_image_keeps_the_local_one(self) -> None:
        """A database image that is not SQLite is logged and not written."""
        store = MemoryFiles({USERS: b'{"users": []}\n', DATABASE: b"not a database"})
        self.take_over(store)
        self.assertFalse((self.target / DATABASE).exists())

    def test_seeded_when_etcd_never_had_them(self) -> None:
        """An etcd never given the security files gets this node's."""
        store = MemoryFiles()
        self.take_over(store)
        self.assertEqual(set(store.files), {USERS})
