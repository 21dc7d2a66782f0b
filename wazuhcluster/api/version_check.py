"""``GET /manager/version/check`` as Wazuh answers it with its update check disabled.

Wazuh 4.8+ asks its CTI service for newer releases when ``<update_check>`` is on. This project
has no such service, so it answers exactly what Wazuh answers when the check is disabled: the
installation's uid, the Wazuh version spoken, ``update_check: false``, an empty
``last_check_date`` and empty ``last_available_major/minor/patch``; ``force_query`` changes
nothing, as in Wazuh when the check is off. The uid is made once (a random UUID) and kept in
HOME/etc/api/installation_uid, as Wazuh keeps its own.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.util.files import write_atomically

UID_FILE = "installation_uid"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def installation_uid(folder: Path) -> str:
    """The installation's uid, made and kept in ``folder`` the first time (blocking: run it
    in a thread). A damaged file is replaced by a new uid."""
    path = folder / UID_FILE
    try:
        found = path.read_text(encoding="ascii", errors="replace")[:64].strip()
    except OSError:
        found = ""
    if _UUID.match(found):
        return found
    made = str(uuid.uuid4())
    write_atomically(path, made.encode("ascii"), mode=0o640)
    return made


def update_information(uid: str) -> dict[str, Any]:
    """Wazuh's answer with the update check disabled."""
    return {
        "uuid": uid,
        "last_check_date": "",
        "current_version": f"v{WAZUH_VERSION}",
        "update_check": False,
        "last_available_major": {},
        "last_available_minor": {},
        "last_available_patch": {},
    }
