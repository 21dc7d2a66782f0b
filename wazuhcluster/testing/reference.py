"""Where tests and benchmarks find Wazuh's own reference data, which the project never ships.

Two settings, each an environment variable holding a path:

- ``WAZUH_RULESET``: Wazuh's ``ruleset/`` folder (``decoders/``, ``rules/``, ``lists/``,
  ``sca/``, ``testing/``), by default ``../shared/wazuh-ruleset`` beside the checkout.
- ``WAZUH_API_SPEC``: Wazuh's API OpenAPI description (``spec-4.14.7.yaml``), by default
  ``../shared/reference/wazuh-api/spec-4.14.7.yaml`` beside the checkout.

A relative value is read from the checkout's root, not from the current directory (trial runs
tests inside ``_trial_temp``). A test that needs the data and finds nothing skips with
:func:`missing_reason`'s one line; CI sets both and fails when either is missing.
"""

from __future__ import annotations

import os

#: The folder holding ``wazuhcluster/``: the checkout's root when run from a clone.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DEFAULTS = {
    "WAZUH_RULESET": os.path.join("..", "shared", "wazuh-ruleset"),
    "WAZUH_API_SPEC": os.path.join("..", "shared", "reference", "wazuh-api", "spec-4.14.7.yaml"),
}


def reference_path(setting: str) -> str:
    """The absolute path the setting names (its environment variable, else the default)."""
    value = os.environ.get(setting) or _DEFAULTS[setting]
    return os.path.normpath(os.path.join(CHECKOUT, os.path.expanduser(value)))


def wazuh_ruleset() -> str:
    """Wazuh's ``ruleset/`` folder as ``WAZUH_RULESET`` names it (it may not exist)."""
    return reference_path("WAZUH_RULESET")


def wazuh_api_spec() -> str:
    """Wazuh's OpenAPI description as ``WAZUH_API_SPEC`` names it (it may not exist)."""
    return reference_path("WAZUH_API_SPEC")


def missing_reason(setting: str) -> str | None:
    """None when the setting's path exists, else a one-line reason to skip for."""
    path = reference_path(setting)
    if os.path.exists(path):
        return None
    return f"{setting} not found at {path} (set {setting} to Wazuh's copy to run this)"
