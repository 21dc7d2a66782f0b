"""The API's errors and how they look on the wire.

Every failed call answers with a JSON "problem" object, as the Wazuh API does:
``{"title": ..., "detail": ..., "error": <code>, "remediation": ...}`` (``error`` and
``remediation`` only for errors that have a Wazuh code) with the matching HTTP status.
Errors of one item inside a multi-item call go in ``failed_items`` instead, via
:func:`failed_item`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import frozen

PROBLEM_CONTENT_TYPE = b"application/problem+json; charset=utf-8"


@frozen
class Code:
    """One Wazuh error code: its message, a hint for the operator and its HTTP status."""

    message: str
    remediation: str | None = None
    status: int = 400
    title: str = "Bad Request"


_NOT_FOUND = "Resource Not Found"

#: The Wazuh error codes this API can answer with (numbers as in Wazuh's framework).
CODES: dict[int, Code] = {
    1000: Code("Wazuh Internal Error", "Check the master's log", 500, "Wazuh Internal Error"),
    1012: Code("Invalid message to queue", "Send events of at most 65,521 bytes"),
    1017: Code(
        "Some Wazuh daemons are not ready yet in node",
        "Wait for the node to start",
        500,
        "Wazuh Internal Error",
    ),
    1006: Code(
        "File/directory does not exist or there is a problem with the permissions",
        "List the group's files with GET /groups/{group_id}/files",
    ),
    1015: Code(
        "Agent version is null. Was the agent ever connected?", "Wait for its first keep-alive"
    ),
    1101: Code("Error reading the configuration file", "Check the node's configuration"),
    1103: Code("Invalid field in section", "Ask for a field the section has"),
    1116: Code(
        "Requested component configuration does not exist",
        "See the README for the component configurations a node answers",
    ),
    1117: Code(
        "Unable to connect with component. The component might be disabled.",
        "Check that the agent is connected and its component enabled",
    ),
    1121: Code(
        "Error connecting with socket",
        "This component's settings are not kept by this node (see the README)",
    ),
    1106: Code("Requested section not present in configuration", "Ask for a configured section"),
    1112: Code("Empty files are not supported", "Send the file's content in the body"),
    1113: Code("XML syntax error", "Send a well-formed agent.conf"),
    1125: Code(
        "Invalid ossec configuration",
        "Send a configuration file that passes `twistd wazuhcluster --test-config`",
    ),
    1308: Code("Stats file does not exist", "Ask for a day the node analysed events on"),
    1309: Code("Statistics file damaged", "Check the node's var/stats/totals files"),
    1310: Code("Invalid agent ID", "Ask an agent other than 000"),
    1400: Code("Invalid offset"),
    1405: Code("Specified limit exceeds maximum allowed", "Use a limit between 1 and 100000"),
    1406: Code("0 is not a valid limit", "Use a limit between 1 and 100000"),
    1403: Code("Not a valid sort field", "Sort by one of the listed fields"),
    1407: Code("Query does not match expected format", "Write field<op>value joined by ; or ,"),
    1408: Code("Field does not exist", "Query one of the listed fields"),
    1409: Code("Invalid query operator", "Use one of =, !=, <, > or ~"),
    1411: Code("TimeFrame is not valid", "Use seconds or a number followed by s, m, h or d"),
    1412: Code(
        "Date filter not valid",
        "Use a time frame (30, 10s, 5m, 2h, 7d) or a date (YYYY-MM-DD, YYYY-MM-DD hh:mm:ss)",
    ),
    1415: Code("Rules file not found", "List the rule files with GET /rules/files"),
    1503: Code("Decoders file not found", "List the decoder files with GET /decoders/files"),
    1650: Code("Active response - Command not specified", "Give the command to run"),
    1652: Code(
        "The command used is not defined in the configuration.",
        "Use a command of etc/shared/ar.conf, or a script name starting with '!'",
    ),
    1701: Code(
        "Agent does not exist", "List the agents with GET /agents?select=id,name", 404, _NOT_FOUND
    ),
    1703: Code("Action not available for Manager (agent 000)", "Select an agent other than 000"),
    1705: Code("There is an agent with the same name", "Choose another name"),
    1706: Code("There is an agent with the same IP or the IP is invalid", "Choose another IP"),
    1707: Code(
        "Cannot send request, agent is not active",
        "Only agents connected to a node can be asked to reconnect",
    ),
    1708: Code("There is an agent with the same ID", "Choose another id or leave it out"),
    1709: Code("Too short key size", "A key has 64 characters"),
    1710: Code("The group does not exist", "List the groups with GET /groups", 404, _NOT_FOUND),
    1711: Code("The group already exists", "Use another group name"),
    1712: Code("Default group is not deletable"),
    1722: Code(
        "Incorrect format for group_id",
        "Use letters, digits, '.', '_' and '-' only; at most 255 characters",
    ),
    1724: Code("Not a valid select field", "Select only the listed fields"),
    1725: Code("Error registering a new agent", "Check the name and IP and try again"),
    1730: Code("Node does not exist", "List the nodes with GET /cluster/nodes", 404, _NOT_FOUND),
    1734: Code("Error removing agent from group", "The agent does not belong to that group"),
    1735: Code("Agent version is not compatible with this feature", "Upgrade the agent"),
    1740: Code("Action only available for active agents", "Wait until the agent is active"),
    1737: Code("Maximum number of groups per multigroup is 128", "Remove the agent from a group"),
    1738: Code("Agent name is too long", "An agent name has at most 128 characters"),
    1745: Code("Agent only belongs to 'default' and it cannot be unassigned from this group."),
    1751: Code("Could not assign agent to group", "The agent already belongs to that group"),
    1800: Code("Bad format in CDB list", "Write one key:value pair per line"),
    1801: Code("Wrong 'path' parameter", "Name a file directly in the folder"),
    1802: Code("Lists file not found", "List the lists with GET /lists/files"),
    1905: Code("File could not be updated, it already exists", "Add overwrite=true to replace it"),
    1906: Code("File does not exist", "List the files of the family first"),
    1908: Code("Error validating configuration", "Fix the file and try again"),
    1911: Code("Error parsing body request to UTF-8", "Send the file's content as UTF-8"),
    3020: Code(
        "Timeout sending request", "The node did not answer in time", 500, "Wazuh Internal Error"
    ),
    3022: Code("Unknown node ID", "The node is not connected to the master"),
    7000: Code("Error trying to get logtest response"),
    7001: Code("Error trying to read logtest session token", "Send a token given by PUT /logtest"),
    2003: Code("Error in wazuhdb request", "Use an offset between 0 and 2147483647"),
    4000: Code(
        "Permission denied", "Ask for a role that allows this action", 403, "Permission Denied"
    ),
    4001: Code("The body of the request is empty, you must specify what you want to modify"),
    4002: Code("The specified role does not exist", "List the roles with GET /security/roles"),
    4003: Code("The specified security rule is invalid", "A rule is a JSON object"),
    4005: Code("The specified name or rule already exists"),
    4006: Code(
        "The specified policy is invalid",
        "A policy has actions (word:word), resources (type:attribute:value) and an effect",
    ),
    4007: Code(
        "The specified policy does not exist", "List the policies with GET /security/policies"
    ),
    4008: Code("The specified resource is required for a correct Wazuh's functionality"),
    4009: Code("The specified policy already exists"),
    4010: Code("The specified role does not contain the specified policy"),
    4011: Code("The specified role already contains the specified policy"),
    4013: Code("The specified name or policy already exists"),
    4016: Code("The specified user does not contain the specified role"),
    4017: Code("The specified user already contains the specified role"),
    4018: Code("Level cannot be a negative number"),
    4022: Code("The specified security rule does not exist", "List them with GET /security/rules"),
    4023: Code("The specified role already contains the specified security rule"),
    4024: Code("The specified role does not contain the specified security rule"),
    5000: Code("The user could not be created", "Choose another user name"),
    5001: Code("The user does not exist", "List the users with GET /security/users"),
    5004: Code("The user could not be removed or updated"),
    5007: Code(
        "Insecure user password provided",
        "The password needs a lower-case and an upper-case letter, a digit and a symbol",
    ),
    5008: Code("The current user cannot be deleted"),
    5009: Code("Insecure user password provided", "A password has 8 to 64 characters"),
    5011: Code(
        "Administrator users can only be modified by themselves",
        "Log in as a reserved user to change a reserved user's password",
    ),
    6004: Code(
        "The current user does not have authentication through authorization context",
        "Ask an administrator to allow run_as for this user",
        403,
        "Permission Denied",
    ),
    6000: Code(
        "Limit of login attempts reached. The current IP has been blocked due to a high "
        "number of login attempts",
        None,
        403,
        "Permission Denied",
    ),
    6001: Code(
        "Maximum number of requests per minute reached",
        "Raise <api><max_request_per_minute> or slow down",
        429,
        "Wazuh Error",
    ),
    6005: Code(
        "Maximum number of requests per minute reached",
        "POST /events takes at most 30 requests a minute",
        429,
        "Wazuh Error",
    ),
    6002: Code(
        "The body type is not the one specified in the content-type", None, 406, "Wazuh Error"
    ),
}


#: The title of an answer whose status a caller chose over its code's usual one.
_STATUS_TITLES = {400: "Bad Request", 403: "Permission Denied", 404: _NOT_FOUND}


class ApiError(Exception):
    """A failed call: HTTP ``status`` and the problem object to send."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        code: int | None = None,
        remediation: str | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.remediation = remediation

    def problem(self) -> dict[str, Any]:
        """The JSON body of this error."""
        body: dict[str, Any] = {"title": self.title, "detail": self.detail}
        if self.remediation is not None:
            body["remediation"] = self.remediation
        if self.code is not None:
            body["error"] = self.code
        return body


def wazuh_error(code: int, extra: str | None = None, status: int | None = None) -> ApiError:
    """The :class:`ApiError` of a Wazuh error code, with ``extra`` appended to its message."""
    known = CODES[code]
    detail = known.message if extra is None else f"{known.message}: {extra}"
    title = known.title
    if status is not None and status != known.status:
        title = _STATUS_TITLES.get(status, title)
    return ApiError(status or known.status, title, detail, code, known.remediation)


def bad_request(detail: str) -> ApiError:
    """A request that does not match the API description (no Wazuh code, as connexion does)."""
    return ApiError(400, "Bad Request", detail)


def unauthorized(detail: str) -> ApiError:
    """A missing, malformed, expired or revoked token, or bad credentials."""
    return ApiError(401, "Unauthorized", detail)


def not_found() -> ApiError:
    """No route for the path."""
    return ApiError(404, "Not Found", "404: Not Found")


def method_not_allowed() -> ApiError:
    """The path exists but not with this method."""
    return ApiError(405, "Method Not Allowed", "Specified method is invalid for this resource")


def too_large(limit: int, size: int | None) -> ApiError:
    """A request body over the configured limit."""
    actual = "" if size is None else f", actual body size {size}"
    return ApiError(
        413, "Request Entity Too Large", f"Maximum request body size {limit} exceeded{actual}"
    )


def failed_item(code: int, ids: Iterable[str | int]) -> dict[str, Any]:
    """One ``failed_items`` entry: the error of ``code`` shared by ``ids`` (numbers first)."""
    known = CODES[code]
    error: dict[str, Any] = {"code": code, "message": known.message}
    if known.remediation is not None:
        error["remediation"] = known.remediation
    return {"error": error, "id": sorted(ids, key=lambda i: (isinstance(i, str), i))}
