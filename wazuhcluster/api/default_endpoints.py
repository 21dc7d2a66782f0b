"""The Default family: ``GET /``, what this API is, its version and the host serving it."""

from __future__ import annotations

from collections.abc import Callable

from wazuhcluster import WAZUH_VERSION, __version__
from wazuhcluster.api import params as p
from wazuhcluster.api.replies import Reply
from wazuhcluster.api.routes import Call, Route
from wazuhcluster.api.views import iso

#: What ``revision`` says: a Wazuh release stage (this package follows final releases);
#: the package's own version is ``wazuhcluster_version``.
REVISION = "release"


class DefaultEndpoints:
    """``GET /`` (see module docstring)."""

    def __init__(self, hostname: str, now: Callable[[], float]) -> None:
        self.hostname = hostname
        self.now = now

    async def info(self, call: Call) -> Reply:
        """GET /: what this API is."""
        data = {
            "title": "Wazuh API REST",
            "api_version": WAZUH_VERSION,
            "revision": REVISION,
            "license_name": "GPL 2.0",
            "license_url": "https://github.com/wazuh/wazuh/blob/master/LICENSE",
            "hostname": self.hostname,
            "timestamp": str(iso(self.now())).replace("+00:00", "Z"),
            "wazuhcluster_version": __version__,
        }
        return Reply({"data": data, "error": 0})

    def routes(self) -> list[Route]:
        """The routes of this family."""
        return [Route("GET", "/", self.info, p.COMMON)]
