"""Stream kinds and commands of the agent-info and agent-groups syncs.

- ``agent-info`` (worker → master): JSON lines of changed agent rows; the master answers
  with the counts it applied, found stale, and did not know.
- ``agent-groups`` (master → worker): ``{"mode": "full"|"changes", "table"|"changes": ...,
  "checksum": ...}``. A newly connected worker gets the full table, then only changes.
- ``RequestAgentGroups`` (worker → master): the checksums kept disagreeing; send it all.
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.arguments import Json
from wazuhcluster.wire.commands import NotAuthenticated

INFO_KIND = "agent-info"
GROUPS_KIND = "agent-groups"

#: Largest agent-info report (50,000 full rows take about 20 MB).
MAX_INFO_BYTES = 256 * 1024 * 1024
#: Largest agent-groups payload.
MAX_GROUPS_BYTES = 256 * 1024 * 1024


class RequestAgentGroups(amp.Command):
    """Worker → master: send the whole agent → groups table."""

    arguments = []
    response = []
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


#: The most agent ids one SendToAgents carries (one AMP value holds 64 KiB).
MAX_SEND_IDS = 4000
#: The longest manager → agent message (Wazuh's OS_MAXSTR).
MAX_AGENT_MESSAGE = 6144


class SendToAgents(amp.Command):
    """Master → worker: send ``message`` to these agents if they are connected there
    (an active-response or restart command); answers the ids it was sent to."""

    arguments = [(b"message", amp.Unicode()), (b"agents", Json())]
    response = [(b"sent", Json())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class ReconnectAgents(amp.Command):
    """Master → worker: ask these agents (and ``count`` more) connected there to reconnect."""

    arguments = [(b"agents", Json()), (b"count", amp.Integer())]
    response = [(b"reconnected", Json())]
