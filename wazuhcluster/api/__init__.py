"""The master's REST API, compatible with the Wazuh API's cluster, agent and group calls.

``settings.parse_api`` reads ``<api>``; ``service.ApiService`` serves it over HTTPS;
``users.main`` is the ``api-user`` command; ``openapi.json`` describes what is served.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from wazuhcluster.api.hooks import ApiHooks
from wazuhcluster.api.service import ApiService, build_site
from wazuhcluster.config.api_settings import ApiSettings, parse_api


def openapi() -> dict[str, Any]:
    """The OpenAPI description shipped with the package."""
    text = resources.files("wazuhcluster.api").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


__all__ = ["ApiHooks", "ApiService", "ApiSettings", "build_site", "openapi", "parse_api"]
