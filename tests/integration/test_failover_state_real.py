"""Failover keeps the master's synced files, with real nodes and a real etcd on 127.0.0.1:
a group with its own agent.conf and a custom rule made on the master are, after a kill -9
of that master, on the new master's disk and on the worker."""

from __future__ import annotations

from tests.helpers import short_temp_dir
from tests.integration.common import DEADLINE, ClusterTestCase, control
from tests.integration.test_failover_real import failover_block
from wazuhcluster.testing.devcluster import LocalCluster, free_port, wait_for
from wazuhcluster.testing.etcd import EtcdCluster, require_etcd

CONF = (
    b"<agent_config>\n  <localfile>\n    <location>/var/log/failover-web.log</location>\n"
    b"    <log_format>syslog</log_format>\n  </localfile>\n</agent_config>\n"
)
RULE = (
    b'<group name="failover,">\n  <rule id="100900" level="5">\n'
    b"    <match>failover-test</match>\n    <description>failover test</description>\n"
    b"  </rule>\n</group>\n"
)


class FailoverStateRealTests(ClusterTestCase):
    """kill -9 of the master: its groups and custom rules are on the new master."""

    def test_group_and_rule_survive_the_master(self) -> None:
        """On cand-a (master) a rule is written by hand and the group web gets an
        agent.conf; creating the group through the control tool is answered once etcd
        holds them. cand-a is killed -9 and only then cand-b starts (its disk never saw
        the files): elected, it has both on its disk and web in its registry, and worker1
        (relinked to cand-b) keeps them."""
        require_etcd()
        etcd = EtcdCluster(short_temp_dir(self))
        self.addCleanup(etcd.stop)
        etcd.start()
        cluster = LocalCluster(short_temp_dir(self), master="cand-a", workers=["worker1"])
        block = failover_block(etcd.endpoints, ["cand-a", "cand-b"])
        cluster.cluster_extra = lambda name, role: block
        cluster.cluster_ports["cand-b"] = free_port()
        cluster.write()
        cluster.write_node("cand-b", "master")

        first = self.start(cluster, "cand-a", "master")
        self.wait_log(first, "Master for term")
        worker = self.start(cluster, "worker1", "worker")
        self.wait_log(worker, "Successfully connected to master cand-a")

        root_a = cluster.home("cand-a").root
        (root_a / "etc" / "rules").mkdir(parents=True, exist_ok=True)
        (root_a / "etc" / "rules" / "failover_rules.xml").write_bytes(RULE)
        (root_a / "etc" / "shared" / "web").mkdir(parents=True, exist_ok=True)
        (root_a / "etc" / "shared" / "web" / "agent.conf").write_bytes(CONF)
        created = control(root_a, "--create-group", "web")
        self.assertEqual(created.returncode, 0, created.stdout + created.stderr)

        first.kill()
        # cand-b starts only now: its disk never saw the files, only etcd can give them.
        second = self.start(cluster, "cand-b", "master")
        self.wait_log(second, "synced files from etcd", timeout=DEADLINE * 2)
        self.wait_log(second, "Master for term")
        self.wait_log(worker, "Successfully connected to master cand-b")
        for name in ("cand-b", "worker1"):
            root = cluster.home(name).root
            rule = root / "etc" / "rules" / "failover_rules.xml"
            conf = root / "etc" / "shared" / "web" / "agent.conf"

            def arrived(rule=rule, conf=conf) -> bool:  # type: ignore[no-untyped-def]
                return (
                    rule.is_file()
                    and rule.read_bytes() == RULE
                    and conf.is_file()
                    and conf.read_bytes() == CONF
                )

            if not wait_for(arrived, DEADLINE):
                self.fail(f"the rule or agent.conf is not on {name}:\n{second.log_text()[-3000:]}")
        groups = control(cluster.home("cand-b").root, "--list-groups")
        self.assertIn("web", groups.stdout, groups.stdout + groups.stderr)
        self.assertRegex(second.log_text(), r"Took over \d+ synced files from etcd: 2 written here")
