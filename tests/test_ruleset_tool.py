"""Tests for wazuh-cluster-ruleset and wazuhcluster.analysis.ruleset_install.

Small fake Wazuh sources are built in temporary folders: source trees, tar.gz archives and git
repositories with a tag. Wazuh's own ruleset is read only through
:mod:`wazuhcluster.testing.reference` (skipped when absent).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import short_temp_dir
from wazuhcluster.analysis import ruleset_install
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.analysis.ruleset_install import InstallError, extract_archive, find_ruleset
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.config.home import Home
from wazuhcluster.control import commands
from wazuhcluster.scripts import ruleset as tool
from wazuhcluster.testing.reference import missing_reason, wazuh_ruleset

DECODERS = """
<decoder name="shop">
  <program_name>^shop$</program_name>
</decoder>
<decoder name="shop-user">
  <parent>shop</parent>
  <regex>user (\\S+)</regex>
  <order>user</order>
</decoder>
"""

ROOT_RULES = """
<group name="syslog,">
  <rule id="1" level="0" noalert="1">
    <category>syslog</category>
    <description>Every syslog event.</description>
  </rule>
</group>
"""

RULES = """
<group name="shop,">
  <rule id="100100" level="3">
    <decoded_as>shop</decoded_as>
    <description>Shop event.</description>
  </rule>
  <rule id="100101" level="8">
    <if_sid>100100</if_sid>
    <list field="user" lookup="match_key">etc/lists/blocked-users</list>
    <description>Shop: a blocked user.</description>
  </rule>
</group>
"""


def ruleset_files(version: str = "4.14.7", rules: str = RULES) -> dict[str, str]:
    """The files of a small Wazuh ``ruleset/`` folder (the rule file's name carries the
    version, so installs of two versions differ)."""
    return {
        "decoders/0500-shop_decoders.xml": DECODERS,
        "rules/0010-rules_config.xml": ROOT_RULES,
        f"rules/0500-shop_rules-{version}.xml": rules,
        "lists/blocked-users": f"mallory:\nrelease-{version}:\n",
        "lists/amazon/aws-sources": "s3.amazonaws.com:\n",
        "sca/debian/cis_debian12.yml": "policy:\n  id: cis_debian12\n",
        "testing/tests/shop.ini": "[x]\nlog 1 pass = shop: user a\n",
    }


def write_files(base: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path: text) under ``base``."""
    for relative, text in files.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_source(base: Path, version: str = "4.14.7", rules: str = RULES) -> Path:
    """A Wazuh source tree ``base/wazuh-VERSION`` (VERSION.json, src/, ruleset/)."""
    top = base / f"wazuh-{version}"
    write_files(top / "ruleset", ruleset_files(version, rules))
    write_files(top, {"VERSION.json": json.dumps({"version": version}), "src/main.c": "int x;\n"})
    return top


def make_archive(base: Path, version: str = "4.14.7", rules: str = RULES) -> Path:
    """``base/wazuh-VERSION.tar.gz`` laid out like GitHub's tag archive."""
    base.mkdir(parents=True, exist_ok=True)
    top = make_source(base / "tree", version, rules)
    archive = base / f"wazuh-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    return archive


def tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A tar.gz holding exactly ``members`` (their data when regular files)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    """A tar member named ``name`` of type ``kind``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


def good_members(top: str = "wazuh-4.14.7") -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The members of a small valid archive."""
    return [
        (member(f"{top}/ruleset/decoders/a.xml"), DECODERS.encode()),
        (member(f"{top}/ruleset/rules/a.xml"), RULES.encode()),
    ]


class FindAndExtractTests(SynchronousTestCase):
    """Finding the ruleset in a tree, taking it out of an archive, safely."""

    def setUp(self) -> None:
        """A scratch folder."""
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()

    def test_source_tree_and_its_parent_and_a_bare_ruleset(self) -> None:
        """A source tree, the folder holding one (an extracted archive) and a ruleset folder
        itself are all found; the version comes from VERSION.json or the folder name."""
        top = make_source(self.base)
        for given in (top, self.base, top / "ruleset"):
            found = find_ruleset(str(given))
            self.assertEqual(found.path, str(top / "ruleset"))
        self.assertEqual(find_ruleset(str(top)).version, "4.14.7")
        (top / "VERSION.json").unlink()
        self.assertEqual(find_ruleset(str(self.base)).version, "4.14.7")  # wazuh-4.14.7/
        self.assertIsNone(find_ruleset(str(top / "ruleset")).version)
        with self.assertRaisesRegex(InstallError, "no Wazuh ruleset in"):
            find_ruleset(str(top / "src"))

    def test_archive_extracts_only_the_ruleset(self) -> None:
        """Only decoders, rules, lists and sca come out of a source archive; testing/ and
        the rest of the source stay in it."""
        archive = make_archive(self.base / "a")
        into = self.base / "out"
        found = extract_archive(str(archive), str(into))
        self.assertEqual(found.version, "4.14.7")
        self.assertEqual(found.path, str(into / "wazuh-4.14.7" / "ruleset"))
        extracted = sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())
        self.assertEqual(
            extracted,
            sorted(
                f"wazuh-4.14.7/ruleset/{name}"
                for name in ruleset_files()
                if not name.startswith("testing/")
            ),
        )

    def test_archive_version_from_its_top_folder(self) -> None:
        """Without VERSION.json the top folder's name gives the version."""
        archive = tar_with(self.base / "x.tar.gz", good_members("wazuh-4.9.2"))
        self.assertEqual(extract_archive(str(archive), str(self.base / "o")).version, "4.9.2")

    def test_unsafe_archives_are_refused(self) -> None:
        """Absolute names, ``..``, links and special files in the ruleset are refused, and
        nothing is written outside the target folder."""
        cases: dict[str, list[tuple[tarfile.TarInfo, bytes | None]]] = {
            "unsafe path": [(member("/etc/evil"), b"x"), *good_members()],
            "unsafe path ": [(member("wazuh/../../evil"), b"x"), *good_members()],
            "link": [
                *good_members(),
                (member("wazuh-4.14.7/ruleset/rules/b.xml", tarfile.SYMTYPE, "/etc/passwd"), None),
            ],
            "link ": [
                *good_members(),
                (member("wazuh-4.14.7/ruleset/lists/l", tarfile.LNKTYPE, "x/../../y"), None),
            ],
            "special": [
                *good_members(),
                (member("wazuh-4.14.7/ruleset/lists/fifo", tarfile.FIFOTYPE), None),
            ],
        }
        for index, (why, members) in enumerate(cases.items()):
            archive = tar_with(self.base / f"bad{index}.tar.gz", members)
            into = self.base / f"out{index}"
            with self.assertRaisesRegex(InstallError, why.strip()):
                extract_archive(str(archive), str(into))
        self.assertFalse((self.base / "evil").exists())
        self.assertFalse(Path("/etc/evil").exists())

    def test_caps(self) -> None:
        """A file above the size cap and a ruleset with too many files are refused."""
        archive = tar_with(self.base / "big.tar.gz", good_members())
        self.patch(ruleset_install, "MAX_FILE_BYTES", 10)
        with self.assertRaisesRegex(InstallError, "too large"):
            extract_archive(str(archive), str(self.base / "o1"))
        self.patch(ruleset_install, "MAX_FILE_BYTES", 1 << 20)
        self.patch(ruleset_install, "MAX_FILES", 1)
        with self.assertRaisesRegex(InstallError, "too many"):
            extract_archive(str(archive), str(self.base / "o2"))
        self.patch(ruleset_install, "MAX_FILES", 100)
        self.patch(ruleset_install, "MAX_ARCHIVE_BYTES", 10)
        with self.assertRaisesRegex(InstallError, "larger than"):
            extract_archive(str(archive), str(self.base / "o3"))

    def test_not_an_archive_and_no_ruleset(self) -> None:
        """A file that is no tar, and a tar without a ruleset, say so in one line."""
        junk = self.base / "junk.tar.gz"
        junk.write_bytes(b"not an archive at all")
        with self.assertRaisesRegex(InstallError, "cannot read the archive"):
            extract_archive(str(junk), str(self.base / "o"))
        empty = tar_with(self.base / "e.tar.gz", [(member("wazuh-1.0.0/src/a.c"), b"x")])
        with self.assertRaisesRegex(InstallError, "no Wazuh ruleset in"):
            extract_archive(str(empty), str(self.base / "o2"))


class InstallTests(SynchronousTestCase):
    """Staging, validation, the swap, the lists and the record."""

    def setUp(self) -> None:
        """A node home and a scratch folder."""
        self.base = Path(self.mktemp()).absolute()
        self.home = self.base / "home"
        Home(self.home).make_dirs()
        self.times = iter(range(1_700_000_000, 1_800_000_000, 60))

    def install(
        self, version: str = "4.14.7", rules: str = RULES, settings: RulesetSettings | None = None
    ) -> ruleset_install.Result:
        """Install a fresh source tree of ``version``."""
        top = make_source(
            self.base / f"src-{version}-{len(list(self.base.iterdir()))}", version, rules
        )
        return ruleset_install.install(
            str(self.home),
            find_ruleset(str(top)),
            settings or RulesetSettings(),
            clock=lambda: float(next(self.times)),
        )

    def leftovers(self) -> list[str]:
        """Staging folders left in the home."""
        return [p.name for p in self.home.iterdir() if p.name.startswith("ruleset.new-")]

    def test_first_install(self) -> None:
        """The tree lands in HOME/ruleset with a record; its lists also go to etc/lists,
        where the rules name them, so it loads without warnings."""
        result = self.install()
        ruleset = self.home / "ruleset"
        self.assertEqual(result.counts, ruleset_install.Counts(1, 2, 2, 1))
        self.assertEqual(result.warnings, ())
        self.assertIsNone(result.previous)
        self.assertEqual(set(result.lists_written), {"blocked-users", "amazon/aws-sources"})
        self.assertTrue((ruleset / "sca" / "debian" / "cis_debian12.yml").is_file())
        self.assertFalse((ruleset / "testing").exists())
        self.assertEqual(
            (self.home / "etc/lists/blocked-users").read_text(), "mallory:\nrelease-4.14.7:\n"
        )
        record = json.loads((ruleset / ".installed.json").read_text())
        self.assertEqual(record["version"], "4.14.7")
        self.assertEqual(record["installed_at"], "2023-11-14T22:13:20Z")
        self.assertEqual(record["counts"], {"decoders": 1, "rules": 2, "lists": 2, "sca": 1})
        self.assertEqual(self.leftovers(), [])
        self.assertEqual(oct(ruleset.stat().st_mode & 0o777), oct(ruleset_install.DIR_MODE))

    def test_second_install_keeps_the_previous(self) -> None:
        """A new version replaces the tree; the old one is kept as ruleset.old (one
        generation) and status names both."""
        self.install("4.14.6")
        self.install("4.14.7")
        result = self.install("4.14.8")
        self.assertEqual(result.previous, str(self.home / "ruleset.old"))
        self.assertEqual(
            sorted(p.name for p in (self.home / "ruleset" / "rules").iterdir()),
            ["0010-rules_config.xml", "0500-shop_rules-4.14.8.xml"],
        )
        answer = ruleset_install.status(str(self.home))
        self.assertEqual(answer["version"], "4.14.8")
        self.assertEqual(answer["previous"]["version"], "4.14.7")
        self.assertEqual(answer["counts"], {"decoders": 1, "rules": 2, "lists": 2, "sca": 1})
        self.assertEqual(self.leftovers(), [])

    def test_swap_without_rename_exchange(self) -> None:
        """Where renameat2 cannot exchange, two renames give the same result."""
        self.patch(ruleset_install, "_exchange", lambda first, second: False)
        self.install("4.14.6")
        self.install("4.14.7")
        self.assertEqual(ruleset_install.status(str(self.home))["version"], "4.14.7")
        self.assertEqual(
            ruleset_install.read_record(str(self.home / "ruleset.old"))["version"], "4.14.6"
        )

    def test_broken_tree_is_refused_and_the_old_one_stays(self) -> None:
        """A rule file that does not parse is refused with its file and reason; HOME keeps
        its ruleset, its lists and no staging folder."""
        self.install("4.14.6")
        before = (self.home / "etc/lists/blocked-users").read_text()
        with self.assertRaisesRegex(
            InstallError, r"does not load: ruleset/rules/0500-shop_rules-4.14.7.xml"
        ):
            self.install("4.14.7", rules="<group name='x'><rule id='1'")
        self.assertEqual(ruleset_install.status(str(self.home))["version"], "4.14.6")
        self.assertEqual((self.home / "etc/lists/blocked-users").read_text(), before)
        self.assertFalse((self.home / "ruleset.old").exists())
        self.assertEqual(self.leftovers(), [])

    def test_validation_uses_the_node_settings_and_custom_rules(self) -> None:
        """The node's <ruleset> settings apply (an excluded broken file does not matter) and
        its custom rules load on top (a custom rule that breaks is reported)."""
        broken = "<group name='x'><rule id='1'"
        excluded = RulesetSettings(rule_excludes=("0500-shop_rules-4.14.7.xml",))
        (self.home / "etc/rules/local.xml").write_text(RULES.replace("1001", "1002"))
        self.install("4.14.7", rules=broken, settings=excluded)
        (self.home / "etc/rules/local.xml").write_text(broken)
        with self.assertRaisesRegex(InstallError, "etc/rules/local.xml"):
            self.install("4.14.8")

    def test_lists_edited_by_the_operator_are_kept(self) -> None:
        """A list equal to the previous install's copy is updated, a missing one added, an
        edited one kept and reported."""
        self.install("4.14.6")
        (self.home / "etc/lists/amazon/aws-sources").write_text("mine:\n")
        result = self.install("4.14.7")
        self.assertEqual(result.lists_written, ("blocked-users",))
        self.assertEqual(result.lists_kept, ("amazon/aws-sources",))
        self.assertEqual((self.home / "etc/lists/amazon/aws-sources").read_text(), "mine:\n")
        self.assertIn("release-4.14.7", (self.home / "etc/lists/blocked-users").read_text())
        (self.home / "etc/lists/blocked-users").unlink()
        self.assertEqual(self.install("4.14.7").lists_written, ("blocked-users",))

    def test_one_install_at_a_time_and_leftovers_cleared(self) -> None:
        """A second install while one holds the home fails; an interrupted one's staging
        folder is removed by the next."""
        (self.home / "ruleset.new-crashed").mkdir()
        holder = os.open(self.home, os.O_RDONLY)
        self.addCleanup(os.close, holder)
        fcntl.flock(holder, fcntl.LOCK_EX)
        with self.assertRaisesRegex(InstallError, "another ruleset install"):
            self.install()
        fcntl.flock(holder, fcntl.LOCK_UN)
        self.install()
        self.assertEqual(self.leftovers(), [])

    def test_root_gives_the_files_to_the_home_owner(self) -> None:
        """Run as root, the new tree and the lists belong to HOME's owner (the node's user),
        who must read them."""
        if os.geteuid() != 0:
            self.skipTest("needs root to give files away")
        os.chown(self.home, 4242, 4243)
        shutil.rmtree(self.home / "etc/lists")
        self.install()
        for path in (
            self.home / "ruleset",
            self.home / "ruleset/rules/0010-rules_config.xml",
            self.home / "ruleset/.installed.json",
            self.home / "etc/lists",
            self.home / "etc/lists/amazon",
            self.home / "etc/lists/amazon/aws-sources",
        ):
            info = path.stat()
            self.assertEqual((info.st_uid, info.st_gid), (4242, 4243), path)

    def test_status_of_a_home_without_and_with_the_default_set(self) -> None:
        """No ruleset/ says so; the project's default set is recognised; a hand-made one is
        of unknown origin."""
        self.assertFalse(ruleset_install.status(str(self.home))["present"])
        install_default_ruleset(str(self.home))
        answer = ruleset_install.status(str(self.home))
        self.assertEqual(answer["source"], "the project's small default set")
        self.assertIsNone(answer["version"])
        (self.home / "ruleset/rules/9999-mine.xml").write_text(RULES)
        self.assertIn("unknown", ruleset_install.status(str(self.home))["source"])

    def test_reinstall_from_ruleset_old(self) -> None:
        """HOME/ruleset.old is itself a source: a rollback keeps its recorded version."""
        self.install("4.14.6")
        self.install("4.14.7")
        source = find_ruleset(str(self.home / "ruleset.old"))
        self.assertEqual(source.version, "4.14.6")
        ruleset_install.install(str(self.home), source, RulesetSettings())
        self.assertEqual(ruleset_install.status(str(self.home))["version"], "4.14.6")
        self.assertEqual(ruleset_install.status(str(self.home))["previous"]["version"], "4.14.7")

    def test_wazuh_ruleset(self) -> None:
        """Wazuh's own ruleset installs and loads without warnings (lists included)."""
        reason = missing_reason("WAZUH_RULESET")
        if reason:
            self.skipTest(reason)
        source = find_ruleset(wazuh_ruleset())
        result = ruleset_install.install(str(self.home), source, RulesetSettings())
        self.assertEqual(result.warnings, ())
        self.assertEqual(
            (result.counts.decoders, result.counts.rules),
            (
                len([n for n in os.listdir(source.path + "/decoders") if n.endswith(".xml")]),
                len([n for n in os.listdir(source.path + "/rules") if n.endswith(".xml")]),
            ),
        )
        self.assertTrue((self.home / "etc/lists/audit-keys").is_file())


def git(cwd: Path, *args: str) -> None:
    """Run git in ``cwd`` (a fixed identity, no user configuration)."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_SYSTEM": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


class CommandLineTests(SynchronousTestCase):
    """wazuh-cluster-ruleset's run(): sources, messages and exit statuses."""

    def setUp(self) -> None:
        """A node home, a scratch folder, and captured output."""
        self.base = Path(self.mktemp()).absolute()
        self.home = self.base / "home"
        Home(self.home).make_dirs()
        self.out: list[str] = []
        self.reloaded: list[Home] = []
        self.err = io.StringIO()
        self.patch(tool.sys, "stderr", self.err)

    def reload(self, home: Home) -> str:
        """The fake reload: remember the home."""
        self.reloaded.append(home)
        return "The running node: Ruleset reloaded."

    def run_tool(self, *args: str) -> int:
        """run() with our home, output and reload."""
        return tool.run(["--home", str(self.home), *args], reload=self.reload, say=self.out.append)

    def test_install_from_archive_tree_and_status(self) -> None:
        """An archive, then a tree: each installs, is reloaded, and status shows the last."""
        archive = make_archive(self.base / "a", "4.14.6")
        self.assertEqual(self.run_tool("install", "--from", str(archive)), 0, self.err.getvalue())
        self.assertIn("Installed the Wazuh ruleset 4.14.6 from", self.out[0])
        self.assertIn("1 decoder files, 2 rule files, 2 lists, 1 SCA policies", self.out[0])
        self.assertEqual(self.out[-1], "The running node: Ruleset reloaded.")
        self.assertEqual(self.reloaded, [Home(self.home)])
        tree = make_source(self.base / "t", "4.14.7")
        self.assertEqual(self.run_tool("install", "--from", str(tree), "--no-reload"), 0)
        self.assertEqual(len(self.reloaded), 1)
        self.assertIn(f"The previous ruleset is kept in {self.home / 'ruleset.old'}.", self.out)
        self.out.clear()
        self.assertEqual(self.run_tool("status"), 0)
        self.assertIn("version: 4.14.7", self.out[0])
        self.assertIn(f"source: {tree}", self.out[0])
        self.assertIn("files: 1 decoder files, 2 rule files, 2 lists, 1 SCA policies", self.out[0])
        self.assertIn(f"previous: {self.home / 'ruleset.old'} (4.14.6)", self.out[0])
        self.out.clear()
        self.assertEqual(self.run_tool("status", "--json"), 0)
        self.assertEqual(json.loads(self.out[0])["counts"]["rules"], 2)

    def test_status_without_ruleset(self) -> None:
        """A home without ruleset/ says what the node will do."""
        self.assertEqual(self.run_tool("status"), 0)
        self.assertIn("has no ruleset/ yet", self.out[0])

    def test_failures_are_one_line_and_status_1(self) -> None:
        """A missing source, a broken ruleset, a missing home, a bad node config: one line
        on stderr naming the problem, exit 1, no traceback, nothing reloaded."""
        broken = make_source(self.base / "b", rules="<group")
        config = self.home / "etc/wazuh-manager.conf"
        cases: list[tuple[list[str], str, Callable[[], Any] | None]] = [
            (["install", "--from", str(self.base / "nope")], "no such file or directory", None),
            (["install", "--from", str(broken)], "the new ruleset does not load", None),
            (["status"], "is not a directory", lambda: shutil.rmtree(self.home)),
        ]
        for args, message, before in cases:
            self.err.truncate(0)
            self.err.seek(0)
            if before is not None:
                before()
            self.assertEqual(self.run_tool(*args), 1)
            text = self.err.getvalue()
            self.assertIn(message, text)
            self.assertEqual(text.count("\n"), 1, text)
            self.assertTrue(text.startswith("wazuh-cluster-ruleset: "))
        Home(self.home).make_dirs()
        config.write_text(
            "<ossec_config><ruleset><decoder_dir>/abs</decoder_dir></ruleset></ossec_config>"
        )
        self.err.truncate(0)
        self.err.seek(0)
        self.assertEqual(self.run_tool("install", "--from", str(make_source(self.base / "c"))), 1)
        self.assertIn("must be a path inside HOME", self.err.getvalue())
        self.assertEqual(self.reloaded, [])

    def test_wrong_arguments_exit_2(self) -> None:
        """Argument mistakes are argparse's: exit status 2."""
        for args in (
            ["install"],
            ["install", "--version", "latest"],
            ["install", "--version", "4.14.7", "--ref", "v1"],
            ["install", "--from", "x", "--base-url", "http://127.0.0.1/"],
            ["install", "--version", "4.14.7", "--max-download", "0"],
        ):
            with self.assertRaises(SystemExit) as stop:
                self.run_tool(*args)
            self.assertEqual(stop.exception.code, 2, args)

    def test_download_refuses_other_schemes(self) -> None:
        """Only http and https are downloaded (no file://, no ftp://)."""
        with self.assertRaisesRegex(InstallError, "only http and https"):
            tool.download("file:///etc/passwd", str(self.base / "x"), 100, 5)

    def test_git_checkout_with_a_tag(self) -> None:
        """--from CHECKOUT --ref TAG installs the tag's ruleset, not the working tree's; an
        unknown ref and a non-checkout fail in one line."""
        repo = make_source(self.base / "repo", "4.14.7")
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "4.14.7")
        git(repo, "tag", "v4.14.7")
        (repo / "ruleset/rules/0500-shop_rules-4.14.7.xml").write_text("<group")  # after the tag
        self.assertEqual(
            self.run_tool("install", "--from", str(repo), "--ref", "v4.14.7"),
            0,
            self.err.getvalue(),
        )
        answer = ruleset_install.status(str(self.home))
        self.assertEqual(answer["version"], "4.14.7")
        self.assertIn(f"{repo} at v4.14.7 (", answer["source"])
        self.assertIn("<rule", (self.home / "ruleset/rules/0500-shop_rules-4.14.7.xml").read_text())
        self.assertEqual(self.run_tool("install", "--from", str(repo), "--ref", "v9.9.9"), 1)
        self.assertIn("has no ref v9.9.9", self.err.getvalue())
        elsewhere = make_source(short_temp_dir(self))  # outside any git work tree
        self.assertEqual(self.run_tool("install", "--from", str(elsewhere), "--ref", "v4.14.7"), 1)
        self.assertIn("is not a git checkout", self.err.getvalue())
        git(repo, "rm", "-q", "-r", "-f", "ruleset")
        git(repo, "commit", "-q", "-m", "no ruleset")
        git(repo, "tag", "v5.0.0")
        self.assertEqual(self.run_tool("install", "--from", str(repo), "--ref", "v5.0.0"), 1)
        self.assertIn("git archive of v5.0.0", self.err.getvalue())


class ReloadServer(amp.AMP):
    """A control socket that answers ReloadRuleset as a node would."""

    def __init__(self, answer: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.answer = answer

    @commands.ReloadRuleset.responder
    def reload_ruleset(self) -> dict[str, Any]:
        """The configured answer."""
        return self.answer()


class ReloadTests(TestCase):
    """ask_reload() over a real UNIX socket."""

    def listen(self, answer: Callable[[], dict[str, Any]]) -> str:
        """Serve ReloadRuleset on a socket in a short temp dir; return its path."""
        path = str(short_temp_dir(self) / "cluster.sock")
        factory = Factory.forProtocol(lambda: ReloadServer(answer))
        port = reactor.listenUNIX(path, factory)
        self.addCleanup(port.stopListening)
        return path

    async def test_running_node_reloads(self) -> None:
        """A running node's answer is passed on."""
        path = self.listen(lambda: {"message": "Ruleset reloaded."})
        self.assertEqual(await tool.ask_reload(reactor, path), "Ruleset reloaded.")

    async def test_node_without_analysis(self) -> None:
        """A node that runs no analysis: nothing to reload, not a failure."""

        def refuse() -> dict[str, Any]:
            raise commands.ControlError("this node runs no analysis")

        path = self.listen(refuse)
        self.assertEqual(
            await tool.ask_reload(reactor, path), "The node runs no analysis: nothing to reload."
        )

    async def test_no_node(self) -> None:
        """No one listening: None (the caller says no node runs)."""
        path = str(short_temp_dir(self) / "cluster.sock")
        self.assertIsNone(await tool.ask_reload(reactor, path))

    def test_reload_node_without_socket(self) -> None:
        """Without a control socket, no reactor is started and the line says so."""
        home = Home(short_temp_dir(self))
        self.assertIn("No node is running in", tool.reload_node(home))
