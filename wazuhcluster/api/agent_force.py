"""Wazuh's ``force`` object of ``POST /agents``: when a new agent may replace an old one.

``{"enabled": true, "disconnected_time": {"enabled": true, "value": "1h"},
"after_registration_time": "1h"}``, every part optional with those defaults (Wazuh's
``AgentForce``), becomes the :class:`~wazuhcluster.config.auth_settings.ForceRules` the
enrollment authority applies (no key to compare: ``key_mismatch`` plays no part).
"""

from __future__ import annotations

from typing import Any

from wazuhcluster.api import params as p
from wazuhcluster.api.errors import bad_request
from wazuhcluster.api.query import parse_timeframe
from wazuhcluster.config.auth_settings import ForceRules

DEFAULT_TIME = "1h"


def force_rules(force: Any) -> ForceRules:
    """The rules of a ``force`` object (400 when it has the wrong shape)."""
    body = p.check_body(
        force,
        {
            "enabled": (bool, False, 0),
            "disconnected_time": (dict, False, 0),
            "after_registration_time": (str, False, 64),
        },
    )
    disconnected = p.check_body(
        body.get("disconnected_time", {}), {"enabled": (bool, False, 0), "value": (str, False, 64)}
    )
    return ForceRules(
        enabled=body.get("enabled", True),
        key_mismatch=False,
        disconnected_time_enabled=disconnected.get("enabled", True),
        disconnected_time=float(_seconds(disconnected.get("value", DEFAULT_TIME))),
        after_registration_time=float(_seconds(body.get("after_registration_time", DEFAULT_TIME))),
    )


def _seconds(frame: str) -> int:
    """A force time frame in seconds (``30``, ``10s``, ``5m``, ``2h``, ``7d``)."""
    try:
        return parse_timeframe(frame)
    except Exception:
        raise bad_request(f"'{frame[:64]}' is not a valid time frame ('force')") from None
