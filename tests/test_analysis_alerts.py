"""Tests for the alert writer and the alert helpers."""

from __future__ import annotations

import json
import os
import threading
import time

from twisted.trial import unittest

from wazuhcluster.analysis.alerts import AlertWriter, Identity, build_alert, format_timestamp
from wazuhcluster.analysis.eventinfo import EventInfo


class AlertWriterTests(unittest.SynchronousTestCase):
    """AlertWriter appends JSON lines and loses nothing on close."""

    def path(self) -> str:
        """HOME/logs/alerts/alerts.json under a fresh temporary HOME."""
        return os.path.join(self.mktemp(), "logs", "alerts", "alerts.json")

    def read(self, path: str) -> list[dict]:
        """Every alert in the file."""
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def test_creates_directories_and_appends(self) -> None:
        """The writer creates logs/alerts and appends to an existing file."""
        path = self.path()
        first = AlertWriter(path)
        first.write({"n": 1})
        first.close()
        second = AlertWriter(path)
        second.write({"n": 2, "text": "caf\u00e9"})
        second.close()
        self.assertEqual(self.read(path), [{"n": 1}, {"n": 2, "text": "caf\u00e9"}])

    def test_broken_end_cut_before_first_alert(self) -> None:
        """A file whose end a crash broke (a half alert, then the zero bytes of writes the
        file system lost) is cut back to its whole lines before the first alert is written,
        and the writer says what it cut."""
        path = self.path()
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as handle:
            handle.write(b'{"n": 1}\n{"n": 2}\n{"n": 3, "te' + b"\0" * 9000)
        reports: list[tuple[str, str]] = []
        writer = AlertWriter(path, report=lambda level, text: reports.append((level, text)))
        writer.write({"n": 4})
        writer.close()
        self.assertEqual(self.read(path), [{"n": 1}, {"n": 2}, {"n": 4}])
        [(level, text)] = reports
        self.assertEqual(level, "warn")
        self.assertIn("9000 zero bytes", text)
        self.assertIn("half an alert", text)

    def test_whole_file_reopened_silently(self) -> None:
        """A file that ends with a whole line is appended to as it is, without a report."""
        path = self.path()
        first = AlertWriter(path)
        first.write({"n": 1})
        first.close()
        reports: list[tuple[str, str]] = []
        second = AlertWriter(path, report=lambda level, text: reports.append((level, text)))
        second.close()
        self.assertEqual((self.read(path), reports), ([{"n": 1}], []))

    def test_buffered_until_flush(self) -> None:
        """Writes are buffered; flush() makes them visible."""
        path = self.path()
        writer = AlertWriter(path)
        writer.write({"n": 1})
        self.assertEqual(os.path.getsize(path), 0)
        writer.flush()
        self.assertEqual(self.read(path), [{"n": 1}])
        writer.close()

    def test_close_keeps_everything_and_refuses_more(self) -> None:
        """close() flushes every accepted alert; later writes raise; close is idempotent."""
        path = self.path()
        writer = AlertWriter(path, buffer_size=1 << 20)
        for number in range(1000):
            writer.write({"n": number})
        writer.close()
        writer.close()
        self.assertTrue(writer.closed)
        self.assertEqual(len(self.read(path)), 1000)
        self.assertRaises(ValueError, writer.write, {"n": -1})

    def test_threads(self) -> None:
        """Writes from several threads each land as one whole line."""
        path = self.path()
        writer = AlertWriter(path)

        def work(base: int) -> None:
            for number in range(200):
                writer.write({"n": base + number, "pad": "x" * 100})

        threads = [threading.Thread(target=work, args=(i * 1000,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.close()
        numbers = sorted(alert["n"] for alert in self.read(path))
        self.assertEqual(len(numbers), 800)
        self.assertEqual(writer.written, 800)

    def test_full_disk_drops_whole_alerts_and_resumes(self) -> None:
        """A disk that fills mid-write: the flush does not raise, the half line that reached
        the file is cut off, one ERROR is reported; once space returns the next flush
        writes, one WARNING counts the alerts lost, and every line is whole JSON."""
        path = self.path()
        room = [1 << 20]

        def raw_write(fd: int, data: memoryview) -> int:
            if room[0] <= 0:
                raise OSError(28, "No space left on device")
            written = os.write(fd, data[: room[0]])
            room[0] -= written
            return written

        reports: list[tuple[str, str]] = []
        writer = AlertWriter(path, report=lambda *report: reports.append(report),
                             raw_write=raw_write)  # fmt: skip
        writer.write({"n": 0})
        writer.flush()
        room[0] = 10  # room for a part of the next line only
        writer.write({"n": 1, "pad": "x" * 50})
        writer.write({"n": 2})
        writer.flush()
        writer.write_lines('{"n":3}\n')
        writer.flush()
        self.assertEqual(self.read(path), [{"n": 0}])
        self.assertEqual(writer.lost, 3)
        self.assertEqual([level for level, _ in reports], ["error"])
        self.assertIn("No space left on device", reports[0][1])
        room[0] = 1 << 20
        writer.write({"n": 4})
        writer.flush()
        writer.close()
        self.assertEqual(self.read(path), [{"n": 0}, {"n": 4}])
        self.assertEqual([level for level, _ in reports], ["error", "warn"])
        self.assertIn("3 alerts were lost", reports[1][1])
        self.assertIn("No space left on device", reports[1][1])
        self.assertEqual(writer.lost, 0)

    def test_read_only_cut_before_next_write(self) -> None:
        """When even cutting the partial line fails (read-only), it is cut before the next
        successful write, so the file never keeps half a line."""
        path = self.path()
        state = {"room": 5, "read_only": True}
        real_truncate = os.ftruncate

        def raw_write(fd: int, data: memoryview) -> int:
            if state["room"] <= 0:
                raise OSError(30, "Read-only file system")
            written = os.write(fd, data[: state["room"]])
            state["room"] -= written
            return written

        def truncate(fd: int, length: int) -> None:
            if state["read_only"]:
                raise OSError(30, "Read-only file system")
            real_truncate(fd, length)

        self.patch(os, "ftruncate", truncate)
        writer = AlertWriter(path, raw_write=raw_write)
        writer.write({"n": 1})
        writer.flush()
        state.update(room=1 << 20, read_only=False)
        writer.write({"n": 2})
        writer.close()
        self.assertEqual(self.read(path), [{"n": 2}])


class FormattingTests(unittest.SynchronousTestCase):
    """Timestamp and record helpers."""

    def test_timestamp_format(self) -> None:
        """Local time with milliseconds and a numeric zone."""
        self.assertRegex(
            format_timestamp(1_700_000_000.25), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.250[+-]\d{4}$"
        )

    def test_timestamp_reused_within_a_second_and_zone(self) -> None:
        """The rendered second is reused by the next timestamps of that second only while
        the time zone is the same: every one equals a fresh strftime rendering."""

        def fresh(epoch: float) -> str:
            local = time.localtime(epoch)
            millis = int((epoch - int(epoch)) * 1000)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
            return f"{stamp}.{millis:03d}{time.strftime('%z', local)}"

        zone = os.environ.get("TZ")

        def restore() -> None:
            if zone is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = zone
            time.tzset()

        self.addCleanup(restore)
        moments = [1_711_846_799.25, 1_711_846_799.75, 1_711_846_800.001, 1_711_846_800.5]
        for name in ("UTC", "Europe/Madrid", "Asia/Kolkata", "Europe/Madrid"):
            os.environ["TZ"] = name
            time.tzset()
            for epoch in moments:
                self.assertEqual(format_timestamp(epoch), fresh(epoch), name)

    def test_cluster_hidden_and_node(self) -> None:
        """cluster{name,node} appears unless hidden; undecoded events have no decoder."""
        event = EventInfo("plain text", "plain text", "stdin", 1_700_000_000.0)
        shown = build_alert(event, None, Identity("mgr", "prod", "worker-1"), 7)
        self.assertEqual(shown["cluster"], {"name": "prod", "node": "worker-1"})
        self.assertEqual(shown["manager"], {"name": "mgr"})
        self.assertEqual(shown["id"], "1700000000.7")
        self.assertNotIn("decoder", shown)
        hidden = build_alert(event, None, Identity("mgr", hide_cluster=True), 8)
        self.assertNotIn("cluster", hidden)

    def test_agent_ip_and_labels(self) -> None:
        """agent.ip and agent.labels as Wazuh prints them: dotted keys nested, hidden ones
        left out (an empty object when all are hidden), no labels no key, ``any`` no ip."""
        event = EventInfo("x", "x", "stdin", 1.0)
        event.agent_id, event.agent_name, event.agent_ip = "001", "web", "10.0.0.9"
        event.agent_labels = (("env", "prod"), ("aws.region", "eu"), ("aws.zone", "a"), ("!k", "v"))
        agent = build_alert(event, None, Identity(), 1)["agent"]
        self.assertEqual(
            agent,
            {
                "id": "001",
                "name": "web",
                "ip": "10.0.0.9",
                "labels": {"env": "prod", "aws": {"region": "eu", "zone": "a"}},
            },
        )
        event.agent_labels = (("!only", "hidden"),)
        self.assertEqual(build_alert(event, None, Identity(), 2)["agent"]["labels"], {})
        event.agent_labels, event.agent_ip = (), "any"
        self.assertEqual(
            build_alert(event, None, Identity(), 3)["agent"], {"id": "001", "name": "web"}
        )

    def test_nested_dynamic_fields(self) -> None:
        """Dotted field names nest in data; JSON array texts become arrays; empty are dropped."""
        event = EventInfo("x", "x", "stdin", 1.0)
        event.add_field("win.system.eventID", "4624")
        event.add_field("win.system.level", "0")
        event.add_field("tags", '["a", "b"]')
        event.add_field("empty", "")
        data = build_alert(event, None, Identity(), 1)["data"]
        self.assertEqual(
            data, {"win": {"system": {"eventID": "4624", "level": "0"}}, "tags": ["a", "b"]}
        )
