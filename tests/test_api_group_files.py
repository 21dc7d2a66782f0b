"""GET /groups/{group_id}/files/{file_name}: a group's shared file read as Wazuh reads it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from wazuhcluster.api import group_file_reader as reader

POLICY = """# a comment
$web_dirs=/var/www,/srv;
[Check one {CIS: 1.1 Debian} {PCI_DSS: 2.2.4}] [any] [https://example.org/one]
f:/etc/passwd -> r:^root;
d:$web_dirs -> .php$;
[Bare title.] [all] []
f:/etc/shadow;
"""


class ReaderTests(SynchronousTestCase):
    """The readings of each kind of shared file."""

    def test_rcl(self) -> None:
        """Variables, and controls with their tags, condition, reference and checks."""
        data = reader.rcl(POLICY)
        self.assertEqual(data["vars"], {"web_dirs": "/var/www,/srv;"})
        first, one, bare = data["controls"]
        self.assertEqual(first, {})
        self.assertEqual(one["name"], "Check one")
        self.assertEqual((one["cis"], one["pci"]), (["1.1 Debian"], ["2.2.4"]))
        self.assertEqual((one["condition"], one["reference"]), ("any", "https://example.org/one"))
        self.assertEqual(one["checks"], ["f:/etc/passwd -> r:^root;", "d:$web_dirs -> .php$;"])
        self.assertEqual((bare["name"], bare["checks"]), ("Bare title", ["f:/etc/shadow;"]))
        self.assertNotIn("reference", bare)

    def test_rootkit_files_and_trojans(self) -> None:
        """``file ! name ::link`` and ``file !pattern!description`` entries; comments skipped."""
        files = reader.rootkit_files("# x\nbin/.login ! Sun rootkit ::/rootkits/sun.php\nnoise\n")
        self.assertEqual(
            files, [{"filename": "bin/.login", "name": "Sun rootkit", "link": "/rootkits/sun.php"}]
        )
        trojans = reader.rootkit_trojans("ls !bash|^/bin/sh!Trojaned ls\nfind !/dev/[^nlu]!\n")
        self.assertEqual(
            trojans,
            [
                {"filename": "ls", "name": "bash|^/bin/sh", "description": "Trojaned ls"},
                {"filename": "find", "name": "/dev/[^nlu]"},
            ],
        )

    def test_merged(self) -> None:
        """merged.mg: the packed files with their sizes and contents, header line skipped."""
        text = "#default\n!12 agent.conf\n<agent_config>\n!4 extra.txt\nabc\n"
        self.assertEqual(
            reader.merged(text),
            [
                {"file_name": "agent.conf", "file_size": 12, "file_content": "<agent_config>\n"},
                {"file_name": "extra.txt", "file_size": 4, "file_content": "abc\n"},
            ],
        )

    def test_file_names(self) -> None:
        """A file name is one name: no slash, no dot-dot, no hidden name."""
        for good in ("agent.conf", "merged.mg", "rootkit_files.txt", "cis_debian.txt"):
            self.assertIsNotNone(reader.FILE_NAME.fullmatch(good), good)
        for bad in ("..", ".hidden", "a/b", "", "x" * 300):
            self.assertIsNone(reader.FILE_NAME.fullmatch(bad), bad)


class GroupFileEndpointTests(SynchronousTestCase):
    """The endpoint over a harness's group folders."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        self.api.store.create_group("web")
        self.shared = self.api.resource.endpoints.context.shared
        (self.shared / "web" / "cis_web.txt").write_text(POLICY)
        (self.shared / "ar.conf").write_text("restart-ossec0 - restart-ossec.sh - 0\n")

    def test_readings(self) -> None:
        """agent.conf as blocks, ar.conf from the top folder, other files as policies, and
        ``type`` forcing a reading."""
        conf = self.api.call("GET", "/groups/web/files/agent.conf").json["data"]
        self.assertEqual(conf["total_affected_items"], len(conf["affected_items"]))
        ar = self.api.call("GET", "/groups/web/files/ar.conf").json["data"]
        self.assertEqual(ar, ["restart-ossec0 - restart-ossec.sh - 0"])
        policy = self.api.call("GET", "/groups/web/files/cis_web.txt").json["data"]
        self.assertEqual(policy["controls"][1]["name"], "Check one")
        forced = self.api.call("GET", "/groups/web/files/cis_web.txt?type=rootkit_files")
        self.assertEqual(forced.json["data"], [])

    def test_raw(self) -> None:
        """raw=true answers the text: XML for agent.conf, plain text otherwise."""
        conf = self.api.call("GET", "/groups/web/files/agent.conf?raw=true")
        self.assertTrue(conf.content_type.startswith("application/xml"))
        self.assertEqual(conf.raw, (self.shared / "web" / "agent.conf").read_bytes())
        text = self.api.call("GET", "/groups/web/files/cis_web.txt?raw=true")
        self.assertTrue(text.content_type.startswith("text/plain"))
        self.assertEqual(text.raw.decode(), POLICY)

    def test_errors(self) -> None:
        """An unknown group is 404 (1710), a missing file 400 (1006), a path 400."""
        ghost = self.api.call("GET", "/groups/ghost/files/agent.conf")
        self.assertEqual((ghost.status, ghost.json["error"]), (404, 1710))
        missing = self.api.call("GET", "/groups/web/files/nothing.txt")
        self.assertEqual((missing.status, missing.json["error"]), (400, 1006))
        self.assertEqual(self.api.call("GET", "/groups/web/files/..").status, 400)
        self.assertEqual(self.api.call("GET", "/groups/web/files/%2e%2e%2fclient.keys").status, 400)
