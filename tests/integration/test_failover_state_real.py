"""Failover keeps the master's synced files and API users, with real nodes and a real etcd
on 127.0.0.1: a group with its own agent.conf and a custom rule made on the master are,
after a kill -9 of that master, on the new master's disk and on the worker, and a user
created through the old master's API logs in on the new one."""

from __future__ import annotations

import base64

from tests.integration.common import DEADLINE, ClusterTestCase, control
from tests.integration.test_failover_real import (
    api_on_candidates,
    candidates_cluster,
    failover_block,
    https,
    started_etcd,
)
from wazuhcluster.api.users import add_user
from wazuhcluster.config.api_settings import api_dir
from wazuhcluster.testing.devcluster import wait_for

CONF = (
    b"<agent_config>\n  <localfile>\n    <location>/var/log/failover-web.log</location>\n"
    b"    <log_format>syslog</log_format>\n  </localfile>\n</agent_config>\n"
)
API_USER = "failover-admin"
API_PASSWORD = "Fail0ver-Admin!"
NEW_USER = "made-on-a"
NEW_PASSWORD = "Made-0n-Master-A!"
RULE = (
    b'<group name="failover,">\n  <rule id="100900" level="5">\n'
    b"    <match>failover-test</match>\n    <description>failover test</description>\n"
    b"  </rule>\n</group>\n"
)


def login(port: int, user: str, password: str) -> str:
    """A token from the API on ``port`` for ``user`` (fails the caller's assert if none)."""
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, body = https(
        port, "POST", "/security/user/authenticate", {"Authorization": f"Basic {basic}"}
    )
    assert status == 200, (status, body)
    token: str = body["data"]["token"]
    return token


class FailoverStateRealTests(ClusterTestCase):
    """kill -9 of the master: its groups, custom rules and API users are on the new one."""

    def test_group_and_rule_survive_the_master(self) -> None:
        """On cand-a (master) a rule is written by hand and the group web gets an
        agent.conf; creating the group through the control tool is answered once etcd
        holds them; an API user is created through cand-a's API. cand-a is killed -9 and
        only then cand-b starts (its disk never saw the files): elected, it has both on
        its disk and web in its registry, worker1 (relinked to cand-b) keeps them, and the
        API user logs in on cand-b."""
        etcd = started_etcd(self)
        block = failover_block(etcd.endpoints, ["cand-a", "cand-b"])
        cluster = candidates_cluster(self, lambda name: block, extra_config=api_on_candidates)
        add_user(api_dir(cluster.home("cand-a")) / "users.json", API_USER, API_PASSWORD)

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
        # An API user created through cand-a's API is in etcd when answered.
        api_a = cluster.node_ports("cand-a")["api"]
        self.assertTrue(
            wait_for(lambda: https(api_a, "GET", "/failover/master")[0] == 200, DEADLINE)
        )
        token = login(api_a, API_USER, API_PASSWORD)
        status, body = https(
            api_a,
            "POST",
            "/security/users",
            {"Authorization": f"Bearer {token}"},
            {"username": NEW_USER, "password": NEW_PASSWORD},
        )
        self.assertEqual(status, 200, body)

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
        # cand-b never had NEW_USER locally: it came from etcd.
        api_b = cluster.node_ports("cand-b")["api"]
        self.assertTrue(
            wait_for(lambda: https(api_b, "GET", "/failover/master")[0] == 200, DEADLINE)
        )
        self.assertTrue(login(api_b, NEW_USER, NEW_PASSWORD))
        self.assertRegex(second.log_text(), r"Took over \d+ synced files from etcd: 2 written here")
