"""The Rules, Decoders and Lists families over the project's default ruleset: items, files,
and changes validated by loading the whole resulting ruleset first."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness, make_user
from wazuhcluster.analysis.loader import install_default_ruleset

XML = {"content-type": "application/octet-stream"}
GOOD_RULE = b"""<group name="local,">
  <rule id="100100" level="7">
    <if_sid>5716</if_sid>
    <match>root</match>
    <description>Failed login for root.</description>
    <group>pci_dss_10.2.4,custom,</group>
  </rule>
</group>
"""


class RulesetReadTests(SynchronousTestCase):
    """Items and files of the three families."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        install_default_ruleset(str(self.api.home.root))

    def test_rules_items_and_filters(self) -> None:
        """Rules carry Wazuh's fields; ids, level ranges, groups and requirements filter."""
        answer = self.api.call("GET", "/rules?rule_ids=5710").json["data"]
        rule = answer["affected_items"][0]
        self.assertEqual((rule["id"], rule["level"], rule["status"]), (5710, 5, "enabled"))
        self.assertEqual(rule["filename"], "0100-sshd_rules.xml")
        self.assertEqual(rule["relative_dirname"], "ruleset/rules")
        self.assertEqual(rule["pci_dss"], ["10.2.4", "10.2.5"])
        self.assertEqual(rule["gdpr"], ["IV_35.7.d"])
        self.assertEqual(rule["mitre"], ["T1110"])
        self.assertIn("authentication_failed", rule["groups"])
        self.assertNotIn("pci_dss_10.2.4", rule["groups"])
        self.assertEqual(rule["details"]["if_sid"], "5700")
        levels = self.api.call("GET", "/rules?level=5-10&limit=500").json["data"]
        self.assertTrue(all(5 <= r["level"] <= 10 for r in levels["affected_items"]))
        grouped = self.api.call("GET", "/rules?group=sshd&select=id").json["data"]
        self.assertGreater(grouped["total_affected_items"], 3)
        groups = self.api.call("GET", "/rules/groups").json["data"]["affected_items"]
        self.assertIn("sshd", groups)
        pci = self.api.call("GET", "/rules/requirement/pci_dss").json["data"]["affected_items"]
        self.assertIn("10.2.4", pci)
        self.assertEqual(self.api.call("GET", "/rules/requirement/nope").status, 400)
        self.assertEqual(self.api.call("GET", "/rules?level=x").status, 400)

    def test_rule_files_json_and_raw(self) -> None:
        """Files are listed; one file comes as JSON or as its XML text."""
        files = self.api.call("GET", "/rules/files?search=sshd").json["data"]["affected_items"]
        self.assertEqual(
            files,
            [
                {
                    "filename": "0100-sshd_rules.xml",
                    "relative_dirname": "ruleset/rules",
                    "status": "enabled",
                }
            ],
        )
        document = self.api.call("GET", "/rules/files/0100-sshd_rules.xml").json
        group = document["data"]["affected_items"][0]["group"]
        self.assertEqual(group["@name"], "syslog,sshd,")
        self.assertEqual(group["rule"][0]["@id"], "5700")
        raw = self.api.call("GET", "/rules/files/0100-sshd_rules.xml?raw=true")
        self.assertTrue(raw.content_type.startswith("application/xml"))
        self.assertIn(b'<rule id="5710"', raw.raw)
        missing = self.api.call("GET", "/rules/files/nope.xml")
        self.assertEqual((missing.status, missing.json["error"]), (200, 1))
        [failed] = missing.json["data"]["failed_items"]
        self.assertEqual((failed["error"]["code"], failed["id"]), (1415, ["nope.xml"]))

    def test_decoders_and_lists(self) -> None:
        """Decoders with positions and parents; lists with their pairs."""
        decoders = self.api.call("GET", "/decoders?decoder_names=sshd-login-ok").json["data"]
        item = decoders["affected_items"][0]
        self.assertEqual((item["name"], item["details"]["parent"]), ("sshd-login-ok", "sshd"))
        parents = self.api.call("GET", "/decoders/parents").json["data"]["affected_items"]
        self.assertTrue(all("parent" not in d["details"] for d in parents))
        self.assertIn("sshd", [d["name"] for d in parents])
        files = self.api.call("GET", "/decoders/files").json["data"]["affected_items"]
        self.assertEqual(files[0]["filename"], "0010-base_decoders.xml")
        lists = self.api.call("GET", "/lists").json["data"]["affected_items"]
        self.assertIn({"key": "root", "value": "superuser"}, lists[0]["items"])
        listed = self.api.call("GET", "/lists/files").json["data"]["affected_items"]
        self.assertEqual(listed, [{"filename": "admin-users", "relative_dirname": "etc/lists"}])
        pairs = self.api.call("GET", "/lists/files/admin-users").json["data"]["affected_items"]
        self.assertEqual(pairs[0]["root"], "superuser")
        raw = self.api.call("GET", "/lists/files/admin-users?raw=true")
        self.assertEqual(raw.raw.splitlines()[0], b"root:superuser")

    def test_a_missing_file_is_a_failed_item(self) -> None:
        """As Wazuh: reading or deleting a file that is not there answers 200 with the file
        as a failed item (1503 decoders, 1802 lists, 1906 on delete), never a 404."""
        for method, path, code, item in (
            ("GET", "/decoders/files/nope.xml", 1503, "nope.xml"),
            ("GET", "/lists/files/nope?raw=true", 1802, "nope"),
            ("DELETE", "/lists/files/nope", 1906, "etc/lists/nope"),
            ("DELETE", "/decoders/files/nope.xml", 1906, "etc/decoders/nope.xml"),
        ):
            answer = self.api.call(method, path)
            self.assertEqual((answer.status, answer.json["error"]), (200, 1), path)
            data = answer.json["data"]
            self.assertEqual((data["total_affected_items"], data["total_failed_items"]), (0, 1))
            [failed] = data["failed_items"]
            self.assertEqual((failed["error"]["code"], failed["id"]), (code, [item]), path)

    def test_read_is_filtered_by_file(self) -> None:
        """A role reading one rule file sees only its rules."""
        self.api.call(
            "POST",
            "/security/policies",
            {
                "name": "sshd-only",
                "policy": {
                    "actions": ["rules:read"],
                    "resources": ["rule:file:0100-sshd_rules.xml"],
                    "effect": "allow",
                },
            },
        )
        role = self.api.call("POST", "/security/roles", {"name": "sshd-readers"}).json
        role_id = role["data"]["affected_items"][0]["id"]
        self.api.call("POST", f"/security/roles/{role_id}/policies?policy_ids=100")
        token = make_user(self.api, "sshreader")
        user = self.api.call("GET", "/security/users?search=sshreader").json
        user_id = user["data"]["affected_items"][0]["id"]
        self.api.call("POST", f"/security/users/{user_id}/roles?role_ids={role_id}")
        self.api.clock.advance(1)
        credentials = b"sshreader:Str0ng-Passw0rd!"
        token = self.api.call(
            "POST",
            "/security/user/authenticate",
            headers={"authorization": "Basic " + base64.b64encode(credentials).decode()},
            token=None,
        ).json["data"]["token"]
        files = self.api.call("GET", "/rules?select=filename", token=token).json["data"]
        self.assertEqual({r["filename"] for r in files["affected_items"]}, {"0100-sshd_rules.xml"})


class RulesetWriteTests(SynchronousTestCase):
    """PUT and DELETE on the user folders, validated by loading the whole ruleset."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        install_default_ruleset(str(self.api.home.root))
        self.rules = self.api.home.root / "etc" / "rules"

    def test_put_a_rule_file_then_replace_and_delete_it(self) -> None:
        """A loading file is written; a second PUT needs overwrite; DELETE removes it."""
        answer = self.api.call("PUT", "/rules/files/local.xml", GOOD_RULE, headers=XML)
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual(answer.json["data"]["affected_items"], ["etc/rules/local.xml"])
        self.assertEqual((self.rules / "local.xml").read_bytes(), GOOD_RULE)
        rule = self.api.call("GET", "/rules?rule_ids=100100").json["data"]["affected_items"][0]
        self.assertEqual((rule["relative_dirname"], rule["pci_dss"]), ("etc/rules", ["10.2.4"]))
        again = self.api.call("PUT", "/rules/files/local.xml", GOOD_RULE, headers=XML)
        self.assertEqual((again.status, again.json["error"]), (400, 1905))
        replaced = GOOD_RULE.replace(b'level="7"', b'level="9"')
        done = self.api.call("PUT", "/rules/files/local.xml?overwrite=true", replaced, headers=XML)
        self.assertEqual(done.status, 200, done.raw)
        self.assertEqual((self.rules / "local.xml").read_bytes(), replaced)
        removed = self.api.call("DELETE", "/rules/files/local.xml")
        self.assertEqual(removed.json["data"]["affected_items"], ["etc/rules/local.xml"])
        self.assertFalse((self.rules / "local.xml").exists())
        gone = self.api.call("DELETE", "/rules/files/local.xml")
        self.assertEqual((gone.status, gone.json["error"]), (200, 1))
        [failed] = gone.json["data"]["failed_items"]
        self.assertEqual((failed["error"]["code"], failed["id"]), (1906, ["etc/rules/local.xml"]))

    def test_a_file_that_does_not_load_is_refused_with_its_line(self) -> None:
        """Broken XML, or a rule the engine refuses, never reaches the folder."""
        broken = b'<group name="x,">\n  <rule id="100200" level="3">\n</group>\n'
        answer = self.api.call("PUT", "/rules/files/broken.xml", broken, headers=XML)
        self.assertEqual((answer.status, answer.json["error"]), (400, 1113))
        self.assertIn("etc/rules/broken.xml:", answer.json["detail"])
        bad_level = GOOD_RULE.replace(b'level="7"', b'level="99"')
        refused = self.api.call("PUT", "/rules/files/bad.xml", bad_level, headers=XML)
        self.assertEqual((refused.status, refused.json["error"]), (400, 1113), refused.raw)
        self.assertIn("etc/rules/bad.xml:2", refused.json["detail"])
        self.assertEqual(sorted(p.name for p in self.rules.iterdir()), [])
        empty = self.api.call("PUT", "/rules/files/empty.xml", b"  ", headers=XML)
        self.assertEqual(empty.json["error"], 1112)
        name = self.api.call("PUT", "/rules/files/..%2Fx.xml", GOOD_RULE, headers=XML)
        self.assertEqual(name.json["error"], 1801)
        elsewhere = self.api.call(
            "PUT", "/rules/files/x.xml?relative_dirname=ruleset/rules", GOOD_RULE, headers=XML
        )
        self.assertEqual(elsewhere.json["error"], 1801)

    def test_deleting_what_the_ruleset_needs_is_refused(self) -> None:
        """A decoder file that a rule needs cannot go."""
        decoders = self.api.home.root / "etc" / "decoders"
        mine = b'<decoder name="myapp">\n  <program_name>myapp</program_name>\n</decoder>\n'
        put = self.api.call("PUT", "/decoders/files/myapp.xml", mine, headers=XML)
        self.assertEqual(put.status, 200, put.raw)
        rule = (
            b'<group name="myapp,">\n  <rule id="100300" level="3">\n'
            b"    <decoded_as>myapp</decoded_as>\n    <description>myapp</description>\n"
            b"  </rule>\n</group>\n"
        )
        self.assertEqual(
            self.api.call("PUT", "/rules/files/myapp.xml", rule, headers=XML).status, 200
        )
        refused = self.api.call("DELETE", "/decoders/files/myapp.xml")
        self.assertEqual((refused.status, refused.json["error"]), (400, 1113), refused.raw)
        self.assertTrue((decoders / "myapp.xml").exists())

    def test_lists_put_and_validation(self) -> None:
        """A CDB list is written when every line is a pair; otherwise refused with its line."""
        ok = self.api.call("PUT", "/lists/files/blocked", b"10.0.0.1:bad\nevil:\n", headers=XML)
        self.assertEqual(ok.json["data"]["affected_items"], ["etc/lists/blocked"])
        bad = self.api.call("PUT", "/lists/files/broken", b"a:b\nnocolon\n", headers=XML)
        self.assertEqual(
            (bad.json["error"], "etc/lists/broken:2" in bad.json["detail"]), (1800, True)
        )
        self.assertFalse((self.api.home.root / "etc" / "lists" / "broken").exists())

    def test_readonly_cannot_change_files(self) -> None:
        """readonly reads but PUT and DELETE are 403 (4000)."""
        token = make_user(self.api, "reader", "readonly")
        self.assertEqual(self.api.call("GET", "/rules/files", token=token).status, 200)
        for method, path in (
            ("PUT", "/rules/files/local.xml"),
            ("PUT", "/decoders/files/local.xml"),
            ("PUT", "/lists/files/local"),
            ("DELETE", "/lists/files/admin-users"),
        ):
            answer = self.api.call(method, path, GOOD_RULE, headers=XML, token=token)
            self.assertEqual((answer.status, answer.json["error"]), (403, 4000), path)
