"""Tests for wazuhcluster.testing.reference: where tests find Wazuh's reference data."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.testing import reference


class ReferenceTests(SynchronousTestCase):
    """Each setting names one path; a missing path gives a one-line reason."""

    def setUp(self) -> None:
        """Restore the environment after each test."""
        saved = {name: os.environ.get(name) for name in ("WAZUH_RULESET", "WAZUH_API_SPEC")}

        def restore() -> None:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

        self.addCleanup(restore)

    def test_default_is_beside_the_checkout(self) -> None:
        """Unset, WAZUH_RULESET is ../shared/wazuh-ruleset next to the checkout."""
        os.environ.pop("WAZUH_RULESET", None)
        expected = os.path.join(os.path.dirname(reference.CHECKOUT), "shared", "wazuh-ruleset")
        self.assertEqual(reference.wazuh_ruleset(), expected)

    def test_absolute_setting_is_taken_as_is(self) -> None:
        """An absolute path in the setting is the path used."""
        os.environ["WAZUH_API_SPEC"] = "/srv/wazuh/spec.yaml"
        self.assertEqual(reference.wazuh_api_spec(), "/srv/wazuh/spec.yaml")

    def test_relative_setting_is_read_from_the_checkout(self) -> None:
        """A relative path is resolved from the checkout, not the current directory."""
        os.environ["WAZUH_RULESET"] = "data/ruleset"
        self.assertEqual(
            reference.wazuh_ruleset(), os.path.join(reference.CHECKOUT, "data", "ruleset")
        )

    def test_missing_path_gives_one_line_reason(self) -> None:
        """A path that does not exist gives a reason naming the setting and the path."""
        missing = os.path.abspath(self.mktemp())
        os.environ["WAZUH_RULESET"] = missing
        reason = reference.missing_reason("WAZUH_RULESET")
        assert reason is not None
        self.assertIn("WAZUH_RULESET", reason)
        self.assertIn(missing, reason)
        self.assertNotIn("\n", reason)

    def test_existing_path_gives_no_reason(self) -> None:
        """A path that exists needs no skip."""
        present = os.path.abspath(self.mktemp())
        os.mkdir(present)
        os.environ["WAZUH_RULESET"] = present
        self.assertIsNone(reference.missing_reason("WAZUH_RULESET"))
