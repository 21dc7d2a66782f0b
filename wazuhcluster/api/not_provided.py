"""The operations of Wazuh's API this master does not provide, answered 501.

Each entry is a method and a path template of Wazuh 4.14's description. A request for one
of them answers HTTP 501 with a problem body saying so (instead of a 404 that looks like a
wrong path), before any token check: it reveals nothing but this list, which the README
also gives.
"""

from __future__ import annotations

import re

from wazuhcluster.api.errors import ApiError

#: (method, template) of the operations not provided, by family.
NOT_PROVIDED: dict[str, tuple[tuple[str, str], ...]] = {
    "agent upgrades": (
        ("PUT", "/agents/upgrade"),
        ("PUT", "/agents/upgrade_custom"),
        ("GET", "/agents/upgrade_result"),
    ),
    "mitre": tuple(
        ("GET", f"/mitre/{name}")
        for name in (
            "groups",
            "metadata",
            "mitigations",
            "references",
            "software",
            "tactics",
            "techniques",
        )
    ),
    "ciscat": (("GET", "/ciscat/{agent_id}/results"),),
    "tasks": (("GET", "/tasks/status"),),
    "experimental": (
        ("DELETE", "/experimental/rootcheck"),
        ("DELETE", "/experimental/syscheck"),
        ("GET", "/experimental/ciscat/results"),
        *(
            ("GET", f"/experimental/syscollector/{name}")
            for name in (
                "hardware",
                "netaddr",
                "netiface",
                "netproto",
                "os",
                "packages",
                "ports",
                "processes",
                "hotfixes",
            )
        ),
    ),
}

_PATTERNS = [
    (
        method,
        template,
        family,
        re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + r"\Z"),
    )
    for family, operations in NOT_PROVIDED.items()
    for method, template in operations
]


def not_provided(method: str, path: str) -> ApiError | None:
    """The 501 of a Wazuh operation this master does not provide (None for any other)."""
    for wanted, template, family, pattern in _PATTERNS:
        if wanted == method and pattern.match(path):
            return ApiError(
                501,
                "Not Implemented",
                f"{method} {template} ({family}) is not provided by this Wazuh-compatible master",
                remediation="See the README's list of the Wazuh API operations not provided",
            )
    return None
