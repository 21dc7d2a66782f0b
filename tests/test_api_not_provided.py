"""Wazuh operations not provided answer 501 with a clear problem, and they are Wazuh's."""

from __future__ import annotations

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_api_fixtures import ApiHarness
from wazuhcluster.api.not_provided import NOT_PROVIDED
from wazuhcluster.testing.reference import missing_reason, wazuh_api_spec


class NotProvidedTests(SynchronousTestCase):
    """The generated 501 family."""

    def test_each_operation_answers_501(self) -> None:
        """Every listed operation is a 501 naming itself; served neighbours are untouched."""
        api = ApiHarness(self)
        for operations in NOT_PROVIDED.values():
            for method, template in operations:
                path = template.replace("{agent_id}", "001").replace("{node_id}", "master")
                path = path.replace("{component}", "analysis").replace("{configuration}", "x")
                answer = api.call(method, path, token=None)
                self.assertEqual(answer.status, 501, path)
                self.assertEqual(answer.json["title"], "Not Implemented")
                self.assertIn(template, answer.json["detail"])
        self.assertEqual(api.call("GET", "/manager/configuration").status, 200)
        self.assertEqual(api.call("GET", "/mitre/nothing").status, 404)

    def test_the_list_is_wazuhs(self) -> None:
        """Every listed operation exists in Wazuh's description."""
        reason = missing_reason("WAZUH_API_SPEC")
        if reason:
            raise SkipTest(reason)
        operations = spec_operations(wazuh_api_spec())
        for listed in NOT_PROVIDED.values():
            for method, template in listed:
                self.assertIn((method, template), operations)


def spec_operations(path: str) -> set[tuple[str, str]]:
    """(method, path) of every operation of an OpenAPI YAML file, read from its indentation
    (no YAML parser needed: paths sit two spaces in, methods four)."""
    found: set[tuple[str, str]] = set()
    inside = False
    current = ""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if not line.startswith(" "):
                inside = line.startswith("paths:")
                continue
            if not inside:
                continue
            if line.startswith("  /"):
                current = line.strip().rstrip(":").strip("'\"")
            elif line[:4] == "    " and line[4:5] != " ":
                method = line.strip().rstrip(":")
                if method in ("get", "put", "post", "delete"):
                    found.add((method.upper(), current))
    return found
