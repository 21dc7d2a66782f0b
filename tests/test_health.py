"""Health verdicts and the -i / -i more output."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import InMemoryCluster
from wazuhcluster.config.cluster import Timings
from wazuhcluster.node.health import (
    DISCONNECTED,
    LAGGING,
    OK,
    STALE,
    Verdict,
    cluster_verdict,
    iso_time,
    worker_verdict,
)
from wazuhcluster.scripts.control import format_health, format_health_more

NOW = 1_800_000_000.0
TIMINGS = Timings()


def status(**overrides: object) -> dict[str, object]:
    """A healthy worker's status at NOW, with ``overrides``."""
    base: dict[str, object] = {
        "last_keep_alive": NOW - 10,
        "connected_since": NOW - 600,
        "sync_integrity_free": True,
        "last_check_integrity": {"date_start_master": NOW - 5, "date_end_master": NOW - 5},
        "last_sync_integrity": {
            "date_start_master": NOW - 300,
            "date_end_master": NOW - 299,
            "deferred_files": 0,
            "last_error": None,
        },
    }
    base.update(overrides)
    return base


class VerdictTests(SynchronousTestCase):
    """Each rule of worker_verdict and cluster_verdict."""

    def test_ok(self) -> None:
        """Recent keep-alive and integrity check: ok, no reasons."""
        self.assertEqual(worker_verdict(status(), NOW, TIMINGS), Verdict(OK))

    def test_keepalive_late_then_missing(self) -> None:
        """A keep-alive past two periods is lagging; past max_silence it is stale."""
        self.assertEqual(
            worker_verdict(status(last_keep_alive=NOW - 150), NOW, TIMINGS).state, STALE
        )
        late = worker_verdict(status(last_keep_alive=NOW - 119), NOW, TIMINGS)
        self.assertEqual(late.state, LAGGING)
        self.assertIn("keep-alive 119s old", late.reasons)

    def test_integrity_overdue(self) -> None:
        """No integrity check for three cycles plus a timeout is stale."""
        old = {"date_start_master": NOW - 60, "date_end_master": NOW - 60}
        verdict = worker_verdict(status(last_check_integrity=old), NOW, TIMINGS)
        self.assertEqual(verdict.state, STALE)
        never = worker_verdict(status(last_check_integrity={}), NOW, TIMINGS)
        self.assertEqual(never.state, STALE)
        fresh = worker_verdict(
            status(last_check_integrity={}, connected_since=NOW - 3), NOW, TIMINGS
        )
        self.assertEqual(fresh.state, OK)

    def test_sync_problems_are_lagging(self) -> None:
        """A failed sync, pending files or a sync running too long make a worker lagging."""
        failed = status(last_sync_integrity={"last_error": "disk full", "deferred_files": 0})
        self.assertEqual(
            worker_verdict(failed, NOW, TIMINGS).reasons, ("last integrity sync failed: disk full",)
        )
        pending = status(last_sync_integrity={"deferred_files": 12})
        self.assertEqual(worker_verdict(pending, NOW, TIMINGS).state, LAGGING)
        running = status(
            sync_integrity_free=False, last_sync_integrity={"date_start_master": NOW - 500}
        )
        self.assertEqual(worker_verdict(running, NOW, TIMINGS).state, LAGGING)

    def test_disconnected(self) -> None:
        """A departed worker is disconnected, whatever else is known."""
        verdict = worker_verdict({"disconnected_at": NOW - 30}, NOW, TIMINGS)
        self.assertEqual(verdict, Verdict(DISCONNECTED, ("disconnected for 30s",)))

    def test_cluster_takes_worst(self) -> None:
        """The cluster verdict is the worst one, with reasons named by worker."""
        verdict = cluster_verdict(
            {"w1": Verdict(OK), "w2": Verdict(LAGGING, ("slow",)), "w3": Verdict(STALE, ("gone",))}
        )
        self.assertEqual(verdict, Verdict(STALE, ("w2: slow", "w3: gone")))
        self.assertEqual(cluster_verdict({}), Verdict(OK))

    def test_iso_time(self) -> None:
        """Dates print in Wazuh's format; missing ones as n/a."""
        self.assertEqual(iso_time(0.5), "1970-01-01T00:00:00.500000Z")
        self.assertEqual(iso_time(None), "n/a")


class HealthReportTests(SynchronousTestCase):
    """The master's report and its two text forms."""

    def test_report_and_formats(self) -> None:
        """A connected worker and a departed one appear with their verdicts in -i and -i more."""
        cluster = InMemoryCluster(self.mktemp())
        first, second = cluster.add_worker("worker1"), cluster.add_worker("worker2")
        cluster.connect(first)
        cluster.connect(second)
        gone = cluster.master.workers.get("worker2")
        assert gone is not None
        gone.disconnect()
        cluster.settle()
        cluster.reactor.advance(5)
        health = cluster.master.health()
        self.assertEqual(health["nodes"]["worker1"]["verdict"]["state"], OK)
        self.assertEqual(health["nodes"]["worker2"]["verdict"]["state"], DISCONNECTED)
        self.assertEqual(health["verdict"]["state"], DISCONNECTED)
        summary = format_health(health).splitlines()
        self.assertEqual(summary[:3], ["Cluster name: wazuh", "Cluster verdict: disconnected", ""])
        self.assertEqual(summary[3], "Last completed synchronization for connected nodes (1):")
        self.assertTrue(summary[4].startswith("    worker1 (unknown): Integrity check: n/a | "))
        self.assertTrue(summary[4].endswith("Verdict: ok"))
        self.assertEqual(
            summary[5:], ["Disconnected nodes (1):", "    worker2 (unknown): disconnected for 5s"]
        )
        more = format_health_more(health)
        self.assertIn("Connected nodes (2):", more)
        self.assertIn("        Verdict: disconnected (disconnected for 5s)", more)
        self.assertIn("            Last keep Alive:\n                Last received: ", more)
