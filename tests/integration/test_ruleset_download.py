"""``wazuh-cluster-ruleset install --version``: the download, against a local HTTP server;
and the reload of a real running node.

A server on 127.0.0.1 (ephemeral port, in a thread) serves fake Wazuh source archives laid out
like GitHub's tag archives; the tool runs as a real process with ``--base-url`` or
``WAZUHCLUSTER_RULESET_URL`` pointing at it. Every run is bounded in time.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.common import ClusterTestCase
from tests.test_ruleset_tool import make_archive, make_source
from wazuhcluster.config.home import Home

#: The longest one run of the tool may take here.
DEADLINE = 60.0


class ArchiveServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` by path; ``stall`` paths send headers and then nothing."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ArchiveHandler)
        self.files: dict[str, bytes] = {}
        self.stall: set[str] = set()
        self.requests: list[str] = []
        self.release = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up early (the size cap) is expected; anything else is shown."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """GET of one served file, a stalled answer, or 404."""

    server: ArchiveServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        """Answer from the server's table."""
        self.server.requests.append(self.path)
        if self.path in self.server.stall:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.server.release.wait(DEADLINE)
            return
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


class RulesetDownloadTests(SynchronousTestCase):
    """install --version downloads, validates and installs; failures leave the home as it was."""

    def setUp(self) -> None:
        """A home, two fake archives (4.14.6, 4.14.7) and the server."""
        self.base = Path(self.mktemp()).absolute()
        self.home = self.base / "home"
        Home(self.home).make_dirs()
        self.server = ArchiveServer()
        for version in ("4.14.6", "4.14.7"):
            archive = make_archive(self.base / version, version)
            self.server.files[f"/tags/v{version}.tar.gz"] = archive.read_bytes()
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.addCleanup(self.server.release.set)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tags"

    def tool(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run wazuh-cluster-ruleset on the home as its own process."""
        return subprocess.run(
            [sys.executable, "-m", "wazuhcluster.scripts.ruleset", "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
            env={**os.environ, **(env or {})},
        )

    def status(self) -> dict[str, object]:
        """``status --json`` of the home."""
        result = self.tool("status", "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        answer: dict[str, object] = json.loads(result.stdout)
        return answer

    def test_download_install_and_status(self) -> None:
        """--version fetches v<VERSION>.tar.gz from --base-url, then from the environment
        variable; status names the version and the URL."""
        first = self.tool("install", "--version", "4.14.6", "--base-url", self.url)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertIn(f"Downloading {self.url}/v4.14.6.tar.gz", first.stdout)
        self.assertIn("No node is running in", first.stdout)
        self.assertEqual(self.status()["version"], "4.14.6")
        second = self.tool(
            "install", "--version", "v4.14.7", env={"WAZUHCLUSTER_RULESET_URL": self.url}
        )
        self.assertEqual(second.returncode, 0, second.stderr)
        answer = self.status()
        self.assertEqual(answer["version"], "4.14.7")
        self.assertEqual(answer["source"], f"{self.url}/v4.14.7.tar.gz")
        self.assertEqual(answer["counts"], {"decoders": 1, "rules": 2, "lists": 2, "sca": 1})
        self.assertEqual(self.server.requests, ["/tags/v4.14.6.tar.gz", "/tags/v4.14.7.tar.gz"])

    def test_failures_leave_the_ruleset(self) -> None:
        """A missing tag, an archive over --max-download, a server that stalls past
        --timeout and a broken archive: exit 1, one line, the installed ruleset stays."""
        self.assertEqual(
            self.tool("install", "--version", "4.14.6", "--base-url", self.url).returncode, 0
        )
        self.server.files["/tags/v4.14.8.tar.gz"] = os.urandom(3 * 1024 * 1024)
        self.server.files["/tags/v4.14.9.tar.gz"] = b"this is not an archive"
        self.server.stall.add("/tags/v4.15.0.tar.gz")
        cases = [
            ("4.14.5", [], "HTTP 404"),
            ("4.14.8", ["--max-download", "1"], "is larger than 1048576 bytes"),
            ("4.14.9", [], "cannot read the archive"),
            ("4.15.0", ["--timeout", "2"], "cannot download"),
        ]
        for version, extra, message in cases:
            started = time.monotonic()
            result = self.tool("install", "--version", version, "--base-url", self.url, *extra)
            self.assertEqual(result.returncode, 1, (version, result.stdout, result.stderr))
            self.assertIn(message, result.stderr)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertLess(time.monotonic() - started, 30)
            self.assertEqual(self.status()["version"], "4.14.6")
        self.assertEqual(
            sorted(p.name for p in self.home.iterdir() if p.name.startswith("ruleset")),
            ["ruleset"],
        )

    def test_no_server(self) -> None:
        """Nothing listening: a clear line, exit 1 (the network does not allow it)."""
        self.server.shutdown()
        self.server.server_close()
        result = self.tool("install", "--version", "4.14.7", "--base-url", self.url)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"cannot download {self.url}/v4.14.7.tar.gz", result.stderr)


class RunningNodeTests(ClusterTestCase):
    """A node that runs is asked to reload the ruleset just installed."""

    def test_running_master_reloads(self) -> None:
        """install on a running master's home: the tool reports the node's answer and the
        node's log shows a second load, with the new rules (no restart)."""
        cluster = self.make_cluster([])
        master = self.start(cluster, "master", "master")
        self.wait_log(master, "Ruleset loaded")
        loads = master.log_text().count("Ruleset loaded")
        home = cluster.home("master").root
        source = make_source(cluster.base / "src", "4.14.7")
        result = subprocess.run(
            [sys.executable, "-m", "wazuhcluster.scripts.ruleset", "--home", str(home)]
            + ["install", "--from", str(source)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("The running node: Ruleset reloaded.", result.stdout)
        self.assertGreater(master.log_text().count("Ruleset loaded"), loads)
        self.assertTrue(master.running())
        self.assertTrue((home / "ruleset.old").is_dir())  # the default set the node installed
