"""Synced files durable in etcd: the fenced store, the master's publisher fed by the local
integrity scan, the control tool's group writes, and the take-over at promotion that puts
etcd's files on a new master's disk. Deterministic: fakes for etcd, temporary homes."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests import test_registry_link as link_tests
from tests.helpers import InMemoryCluster
from tests.test_api_fixtures import ApiHarness
from tests.test_api_ruleset import GOOD_RULE, XML, install_default_ruleset
from tests.test_failover_agents import PREFIX, FakeFenced, FakeReader
from tests.test_failover_api_writes import Feature
from tests.test_failover_election import MemoryEtcd
from tests.test_failover_roles import Node
from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.service import build_site
from wazuhcluster.config.home import Home
from wazuhcluster.control.commands import ControlError
from wazuhcluster.failover.agents import DurableAgents
from wazuhcluster.failover.election import NotLeader
from wazuhcluster.failover.files import MAX_FILE, DurableFiles, FileTooLarge
from wazuhcluster.failover.interfaces import IDurableFiles
from wazuhcluster.failover.kv import Op
from wazuhcluster.integrity.scan import checksum_bytes, scan_tree
from wazuhcluster.master.durable_api import DurableRegistryFeature
from wazuhcluster.master.durable_files import FilePublisher, is_durable
from wazuhcluster.master.integrity import MasterIntegrity
from wazuhcluster.roles.files_takeover import take_over_files
from wazuhcluster.roles.promotion import open_registry
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.util.threads import run_inline

RULE = b'<group name="local,"><rule id="100100" level="5"><match>x</match></rule></group>\n'
CONF = (
    b"<agent_config><localfile><location>/var/log/web.log</location></localfile></agent_config>\n"
)


def _puts(ops: list[Op]) -> dict[str, bytes]:
    """The keys a list of operations puts, with their values."""
    return {
        base64.b64decode(op.body["key"]).decode(): base64.b64decode(op.body["value"])
        for op in ops
        if op.kind == "request_put"
    }


def _deletes(ops: list[Op]) -> list[str]:
    """The keys a list of operations deletes."""
    return [
        base64.b64decode(op.body["key"]).decode() for op in ops if op.kind == "request_delete_range"
    ]


class MemoryFiles:
    """IDurableFiles in memory; can refuse."""

    def __init__(self, files: dict[str, bytes] | None = None, published: bool = False) -> None:
        self.files = dict(files or {})
        self.published = published or bool(files)
        self.known: dict[str, str] | None = None
        self.refuse: Exception | None = None
        self.publishes: list[tuple[list[str], list[str]]] = []

    async def publish(self, changed: Mapping[str, bytes], removed: Sequence[str]) -> None:
        """Apply, or raise ``refuse``."""
        if self.refuse is not None:
            raise self.refuse
        self.publishes.append((sorted(changed), list(removed)))
        for path in removed:
            self.files.pop(path, None)
        self.files.update(changed)
        self.published = True

    async def load(self) -> tuple[dict[str, bytes], bool]:
        """Every file and whether published."""
        return dict(self.files), self.published


class DurableFilesTests(SynchronousTestCase):
    """The store: fenced, bounded, read back at one revision."""

    def setUp(self) -> None:
        """A store over a fake fenced transaction."""
        self.fenced = FakeFenced()
        self.store = DurableFiles(self.fenced, FakeReader({}), PREFIX)

    def publish(self, changed: dict[str, bytes], removed: list[str]) -> Any:
        """One publication, run to its end."""
        return ensureDeferred(self.store.publish(changed, removed))

    def test_publish_is_fenced_and_marks_etcd(self) -> None:
        """Files are put under files/, removed ones deleted, the marker written last."""
        self.successResultOf(self.publish({"etc/rules/local.xml": RULE}, ["etc/sca/old.yml"]))
        [ops] = self.fenced.transactions
        self.assertEqual(
            _puts(ops),
            {PREFIX + "files/etc/rules/local.xml": RULE, PREFIX + "files-published": b"1"},
        )
        self.assertEqual(_deletes(ops), [PREFIX + "files/etc/sca/old.yml"])
        self.assertEqual(_puts([ops[-1]]), {PREFIX + "files-published": b"1"})

    def test_content_is_split_by_size(self) -> None:
        """Transactions carry at most about 1 MiB of content each."""
        big = b"x" * (MAX_FILE // 2 + 1)
        files = {f"etc/lists/l{n}": big for n in range(3)}
        self.successResultOf(self.publish(files, []))
        self.assertEqual(len(self.fenced.transactions), 3)
        for ops in self.fenced.transactions:
            self.assertLessEqual(sum(len(v) for v in _puts(ops).values()), MAX_FILE + 1)

    def test_too_large_is_refused_before_anything(self) -> None:
        """A file above the bound: FileTooLarge, and no transaction at all."""
        failure = self.failureResultOf(
            self.publish({"etc/rules/a.xml": RULE, "etc/lists/huge": b"x" * (MAX_FILE + 1)}, []),
            FileTooLarge,
        )
        self.assertIn("etc/lists/huge", str(failure.value))
        self.assertEqual(self.fenced.transactions, [])

    def test_refused_by_etcd_raises(self) -> None:
        """A fenced transaction refused (not leading) fails the publication."""
        self.fenced.refuse = NotLeader("no longer the leader")
        self.failureResultOf(self.publish({"etc/rules/a.xml": RULE}, []), NotLeader)

    def test_load_pages_and_marker(self) -> None:
        """Files come back by path over several pages, with whether etcd was marked."""
        keys = {
            (PREFIX + f"files/etc/rules/r{n}.xml").encode(): RULE + bytes([n]) for n in range(9)
        }
        reader = FakeReader({**keys, (PREFIX + "files-published").encode(): b"1"})
        store = DurableFiles(self.fenced, reader, PREFIX)
        files, published = self.successResultOf(ensureDeferred(store.load()))
        self.assertTrue(published)
        self.assertEqual(len(files), 9)
        self.assertEqual(files["etc/rules/r3.xml"], RULE + b"\x03")
        self.assertGreater(len(reader.requests), 2)
        empty = DurableFiles(self.fenced, FakeReader({}), PREFIX)
        self.assertEqual(self.successResultOf(ensureDeferred(empty.load())), ({}, False))

    def test_provides(self) -> None:
        """The store provides IDurableFiles."""
        self.assertTrue(verifyObject(IDurableFiles, self.store))


def make_home(root: Path) -> Home:
    """A home with a group folder and a custom rule."""
    home = Home(root)
    home.make_dirs()
    (home.root / "etc" / "shared" / "web").mkdir(parents=True, exist_ok=True)
    (home.root / "etc" / "shared" / "web" / "agent.conf").write_bytes(CONF)
    (home.root / "etc" / "shared" / "web" / "merged.mg").write_bytes(b"derived")
    (home.root / "etc" / "rules").mkdir(parents=True, exist_ok=True)
    (home.root / "etc" / "rules" / "local.xml").write_bytes(RULE)
    return home


class PublisherTests(SynchronousTestCase):
    """Each scanned table publishes what differs from etcd."""

    def setUp(self) -> None:
        """A home, an empty etcd marked published, and a publisher."""
        self.home = make_home(Path(self.mktemp()))
        self.store = MemoryFiles(published=True)
        self.publisher = FilePublisher(
            self.store, self.home.root, run_inline, ClusterLog("Master", "Local integrity")
        )

    def scanned(self) -> Any:
        """Scan the home and hand the table to the publisher."""
        table = scan_tree(str(self.home.root))
        return ensureDeferred(self.publisher.table_scanned(table))

    def test_changes_are_published(self) -> None:
        """New and edited files go to etcd, derived ones never, removed ones are deleted;
        an unchanged scan writes nothing."""
        self.successResultOf(self.scanned())
        self.assertEqual(
            self.store.files,
            {"etc/shared/web/agent.conf": CONF, "etc/rules/local.xml": RULE},
        )
        self.successResultOf(self.scanned())
        self.assertEqual(len(self.store.publishes), 1)
        (self.home.root / "etc" / "rules" / "local.xml").write_bytes(RULE + b"<!-- v2 -->")
        (self.home.root / "etc" / "shared" / "web" / "agent.conf").unlink()
        self.successResultOf(self.scanned())
        self.assertEqual(self.store.files, {"etc/rules/local.xml": RULE + b"<!-- v2 -->"})

    def test_refused_is_retried(self) -> None:
        """A publication etcd refuses raises and is tried again at the next scan."""
        self.store.refuse = NotLeader("no longer the leader")
        self.failureResultOf(self.scanned(), NotLeader)
        self.assertEqual(self.store.files, {})
        self.store.refuse = None
        self.successResultOf(self.scanned())
        self.assertIn("etc/rules/local.xml", self.store.files)

    def test_too_large_is_refused_once_and_others_published(self) -> None:
        """A file above the bound is named in an error (once per content); the other
        files are published all the same."""
        (self.home.root / "etc" / "lists" / "huge").write_bytes(b"x" * (MAX_FILE + 1))
        failure = self.failureResultOf(self.scanned(), FileTooLarge)
        self.assertEqual(failure.value.relpath, "etc/lists/huge")
        self.assertNotIn("etc/lists/huge", self.store.files)
        self.assertIn("etc/rules/local.xml", self.store.files)
        self.successResultOf(self.scanned())

    def test_which_files(self) -> None:
        """Group folders and the custom ruleset are kept; derived files are not."""
        self.assertTrue(is_durable("etc/shared/web/agent.conf"))
        self.assertTrue(is_durable("etc/sca/custom.yml"))
        self.assertFalse(is_durable("etc/shared/web/merged.mg"))
        self.assertFalse(is_durable("etc/client.keys"))
        self.assertFalse(is_durable("var/multigroups/abc/merged.mg"))


class TakeOverFilesTests(SynchronousTestCase):
    """A new master writes etcd's files to its disk before its services open."""

    def setUp(self) -> None:
        """An old master's home: its own group and rule, as they were."""
        self.home = make_home(Path(self.mktemp()))
        registry = open_registry(self.home)
        registry.create_group("web")
        registry.close()
        self.log = ClusterLog("Master", "Failover")

    def take_over(self, store: MemoryFiles) -> None:
        """Run the take-over to its end."""
        self.successResultOf(
            ensureDeferred(take_over_files(store, self.home, run_inline, self.log))
        )

    def groups(self) -> list[str]:
        """The registry's groups."""
        registry = open_registry(self.home)
        try:
            return [info.name for info in registry.list_groups()]
        finally:
            registry.close()

    def test_etcd_wins_over_the_older_local_copy(self) -> None:
        """etcd's newer rule replaces the local one, its group is created with its
        agent.conf, the local group etcd does not hold is removed with its folder."""
        newer = RULE + b"<!-- newer, from the master that was killed -->\n"
        store = MemoryFiles(
            {
                "etc/rules/local.xml": newer,
                "etc/shared/db/agent.conf": CONF,
                "etc/decoders/local_decoder.xml": b"<decoder name='x'/>\n",
            }
        )
        self.take_over(store)
        root = self.home.root
        self.assertEqual((root / "etc" / "rules" / "local.xml").read_bytes(), newer)
        self.assertEqual((root / "etc" / "shared" / "db" / "agent.conf").read_bytes(), CONF)
        self.assertTrue((root / "etc" / "decoders" / "local_decoder.xml").is_file())
        self.assertFalse((root / "etc" / "shared" / "web").exists())
        self.assertIn("db", self.groups())
        self.assertNotIn("web", self.groups())
        self.assertEqual(store.known, {p: checksum_bytes(d) for p, d in store.files.items()})
        self.assertEqual(store.publishes, [])

    def test_etcd_never_given_files_is_seeded(self) -> None:
        """With no marker in etcd the node's own files are published, nothing on disk
        changes."""
        store = MemoryFiles()
        self.take_over(store)
        self.assertEqual(
            store.files, {"etc/shared/web/agent.conf": CONF, "etc/rules/local.xml": RULE}
        )
        self.assertTrue((self.home.root / "etc" / "shared" / "web" / "agent.conf").is_file())
        self.assertIn("web", self.groups())

    def test_bad_paths_in_etcd_are_skipped(self) -> None:
        """A key that is not a durable synced path never reaches the disk."""
        store = MemoryFiles(
            {"etc/../../evil": b"x", "etc/client.keys": b"x", "etc/rules/a.xml": RULE}
        )
        self.take_over(store)
        self.assertFalse((self.home.root.parent / "evil").exists())
        self.assertEqual((self.home.root / "etc" / "rules" / "a.xml").read_bytes(), RULE)
        self.assertFalse((self.home.root / "etc" / "rules" / "local.xml").exists())


class ControlGroupsTests(link_tests.RegistryLinkTests):
    """Groups created or deleted through the control socket are answered once etcd holds
    their folders; a creation etcd refuses is undone."""

    def setUp(self) -> None:
        """The in-memory cluster of the registry link tests, with a file publisher."""
        super().setUp()
        self.published = 0
        self.refuse: Exception | None = None

        async def publish() -> None:
            if self.refuse is not None:
                raise self.refuse
            self.published += 1

        self.master.publish_files = publish

    def test_create_and_delete_wait_for_etcd(self) -> None:
        """Each group write publishes; a refused creation leaves no group and says why."""
        self.successResultOf(ensureDeferred(self.master.manage("create_group", {"name": "web"})))
        self.assertEqual(self.published, 1)
        self.successResultOf(ensureDeferred(self.master.manage("delete_group", {"name": "web"})))
        self.assertEqual(self.published, 2)
        self.refuse = NotLeader("no longer the leader")
        refused = ensureDeferred(self.master.manage("create_group", {"name": "db"}))
        self.assertIn("not created", str(self.failureResultOf(refused, ControlError).value))
        groups = self.successResultOf(self.master.registry.list_groups())
        self.assertNotIn("db", [group.name for group in groups])


class ApiGroupsTests(SynchronousTestCase):
    """Group writes through the REST API are answered once etcd holds the files (a real
    election and the real store over the in-memory etcd)."""

    def setUp(self) -> None:
        """n1 leads; the API's group writes publish through a FilePublisher."""
        self.clock = Clock()
        self.etcd = MemoryEtcd(self.clock)
        self.leader = Node(self.etcd, self.clock, "n1").start(self)
        self.clock.advance(0)
        durable = DurableAgents(self.leader.leadership, self.etcd, PREFIX)
        self.files = DurableFiles(self.leader.leadership, self.etcd, PREFIX)
        self.files.known = {}  # as after the take-over of an etcd without files
        self.api = ApiHarness(self, token_timeout=36000)
        root = self.api.home.root
        publisher = FilePublisher(self.files, root, run_inline, ClusterLog("Master", "Test"))

        async def publish_now() -> None:
            await publisher.table_scanned(scan_tree(str(root)))

        publisher.rescan = publish_now
        provider = DurableRegistryFeature(Feature(self.api.registry), durable, publish_now)
        self.api.site, self.api.resource = build_site(
            self.api.settings,
            self.api.node,
            provider,
            self.api.clock.seconds,
            run_inline,
            ApiHooks(files_changed=publisher.publish_for_api),
            "api-host",
        )
        self.addCleanup(self.api.resource.endpoints.tokens.store.close)
        self.api.token()

    def etcd_files(self) -> dict[str, bytes]:
        """The files etcd holds, by path."""
        files = PREFIX.encode() + b"files/"
        return {
            key[len(files) :].decode(): kv.value
            for key, kv in self.etcd.keys.items()
            if key.startswith(files)
        }

    def test_group_and_agent_conf_are_in_etcd_when_answered(self) -> None:
        """POST /groups, PUT its configuration, DELETE it: each answered with etcd holding
        the result; a creation etcd refuses is 503 and undone."""
        answer = self.api.call("POST", "/groups", {"group_id": "web"})
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertIn("etc/shared/web/agent.conf", self.etcd_files())
        answer = self.api.call(
            "PUT", "/groups/web/configuration", CONF, {"content-type": "application/xml"}
        )
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(self.etcd_files()["etc/shared/web/agent.conf"], CONF)
        answer = self.api.call("DELETE", "/groups?groups_list=web")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertNotIn("etc/shared/web/agent.conf", self.etcd_files())
        self.etcd._drop_lease(self.leader.leadership._lease)  # type: ignore[arg-type]
        answer = self.api.call("POST", "/groups", {"group_id": "db"})
        self.assertEqual(answer.status, 503, answer.raw)
        self.assertFalse(self.api.store.group_exists("db"))
        self.assertNotIn("etc/shared/db/agent.conf", self.etcd_files())

    def test_ruleset_files_are_in_etcd_when_answered(self) -> None:
        """PUT and DELETE /rules/files/{name}: etcd holds the result when answered; once
        etcd refuses, 503."""
        install_default_ruleset(str(self.api.home.root))
        answer = self.api.call("PUT", "/rules/files/failover_rules.xml", GOOD_RULE, XML)
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(self.etcd_files().get("etc/rules/failover_rules.xml"), GOOD_RULE)
        answer = self.api.call("DELETE", "/rules/files/failover_rules.xml")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertNotIn("etc/rules/failover_rules.xml", self.etcd_files())
        self.etcd._drop_lease(self.leader.leadership._lease)  # type: ignore[arg-type]
        answer = self.api.call("PUT", "/rules/files/late.xml", GOOD_RULE, XML)
        self.assertEqual(answer.status, 503, answer.raw)
        self.assertIn("made on this master only", answer.json["detail"])


class IntegrityHookTests(SynchronousTestCase):
    """The master's local integrity scan hands each table to the publisher, and a group
    write's rescan raises what the publication raised."""

    def setUp(self) -> None:
        """A master's integrity feature over an in-memory cluster, with a publisher."""
        self.cluster = InMemoryCluster(self.mktemp())
        root = self.cluster.master_home.root
        self.integrity = MasterIntegrity(root, self.cluster.master, run_in_thread=run_inline)
        self.store = MemoryFiles(published=True)
        self.publisher = FilePublisher(self.store, root, run_inline, ClusterLog("Master", "T"))
        self.integrity.on_table = self.publisher.table_scanned
        self.publisher.rescan = self.integrity.rescan_now
        self.integrity.task.startService()
        self.addCleanup(self.integrity.task.stopService)

    def test_scan_publishes_and_rescan_reports(self) -> None:
        """A rule written by hand is in etcd after the next scan; a publication etcd
        refuses fails publish_now and is logged by the periodic scan."""
        rules = self.cluster.master_home.root / "etc" / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        (rules / "hand.xml").write_bytes(RULE)
        self.successResultOf(ensureDeferred(self.publisher.publish_now()))
        self.assertEqual(self.store.files.get("etc/rules/hand.xml"), RULE)
        (rules / "hand.xml").write_bytes(RULE + b"<!-- edited -->")
        self.store.refuse = NotLeader("no longer the leader")
        self.failureResultOf(ensureDeferred(self.publisher.publish_now()), NotLeader)
        self.assertEqual(self.store.files["etc/rules/hand.xml"], RULE)
        self.store.refuse = None
        self.successResultOf(ensureDeferred(self.publisher.publish_now()))
        self.assertEqual(self.store.files["etc/rules/hand.xml"], RULE + b"<!-- edited -->")
