"""Parse and format the plaintext messages of the agent channel.

Control messages start with ``#!-`` (Wazuh's ``rc.h``): ``agent startup {json}``,
``agent shutdown ``, keep-alives (a uname line, labels, shared-file sums, the agent IP),
and, from the manager, ``agent ack ``, ``up file <md5> <name>``, ``close file ``,
``force_reconnect`` and ``err {json}``. Anything else is an event
``<queue>:<location>:<message>``. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from attrs import frozen

CONTROL_HEADER = "#!-"
CONTROL_HEADER_BYTES = CONTROL_HEADER.encode()
STARTUP_PREFIX = CONTROL_HEADER + "agent startup "
SHUTDOWN = CONTROL_HEADER + "agent shutdown "
ACK = CONTROL_HEADER + "agent ack "
FILE_UPDATE_PREFIX = CONTROL_HEADER + "up file "
FILE_CLOSE = CONTROL_HEADER + "close file "
FORCE_RECONNECT = CONTROL_HEADER + "force_reconnect"
ERROR_PREFIX = CONTROL_HEADER + "err "
REQUEST_PREFIX = CONTROL_HEADER + "req "
PING = b"#ping"
PONG = b"#pong"
SHARED_FILE = "merged.mg"
#: Wazuh sends shared files in reads of this many bytes, one message each.
SHARED_CHUNK = 900
AGENT_IP_LABEL = '#"_agent_ip":'
NO_MERGED_SUM = "x"
_ARCHS = (
    "x86_64",
    "i386",
    "i686",
    "sparc",
    "amd64",
    "i86pc",
    "ia64",
    "AIX",
    "armv6",
    "armv7",
    "aarch64",
    "arm64",
)
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MAJOR = re.compile(r"^([0-9]+)")
_MINOR = re.compile(r"^[0-9]+\.([0-9]+)")
_SUSE_MINOR = re.compile(r"^[0-9]+-[Ss][Pp]([0-9]+)")
_BUILD = re.compile(r"^[0-9]+\.[0-9]+\.([0-9]+(?:\.[0-9]+)*)")
INVALID_VERSION_RESPONSE = "Agent version must be lower or equal to manager version"
RETRIEVE_VERSION = "Couldn't retrieve version"
#: Queue characters Wazuh agents use (mq_op.h); others are refused.
QUEUES = frozenset("123456789abcdefghijklmnopqrstuvwxyz")


class ControlError(ValueError):
    """A control message or event that does not follow Wazuh's format."""


@frozen
class OsInfo:
    """OS fields Wazuh extracts from an agent's uname string."""

    name: str | None = None
    version: str | None = None
    major: str | None = None
    minor: str | None = None
    build: str | None = None
    codename: str | None = None
    platform: str | None = None
    arch: str | None = None


@frozen
class KeepAliveData:
    """What one keep-alive tells about the agent."""

    uname: str | None
    os: OsInfo
    version: str | None
    config_sum: str | None
    merged_sum: str | None
    labels: tuple[str, ...]
    agent_ip: str | None


@frozen
class Startup:
    """``#!-agent startup {"version": ...}``; ``has_info`` tells whether the JSON parsed."""

    version: str | None
    has_info: bool = True


@frozen
class Shutdown:
    """``#!-agent shutdown ``."""


@frozen
class KeepAlive:
    """A keep-alive with its parsed data."""

    data: KeepAliveData


@frozen
class Request:
    """``#!-req <counter> <payload>``: an answer to a manager request."""

    text: str


@frozen
class OtherControl:
    """Any other ``#!-`` message from an agent (syscheck and friends)."""

    text: str


AgentControl = Startup | Shutdown | KeepAlive | Request | OtherControl


def is_control(message: bytes | str) -> bool:
    """Whether a decrypted message is a control message."""
    if isinstance(message, bytes):
        return message.startswith(CONTROL_HEADER_BYTES)
    return message.startswith(CONTROL_HEADER)


def _arch(uname: str) -> str | None:
    return next((arch for arch in _ARCHS if arch in uname), None)


def _match(pattern: re.Pattern[str], text: str | None) -> str | None:
    if text is None:
        return None
    found = pattern.match(text)
    return found.group(1) if found else None


def parse_uname(uname: str) -> OsInfo:
    """Split a uname string into OS fields, following Wazuh's ``parse_uname_string``.

    Linux: ``Linux |host |5.15 |#1 SMP |x86_64 [Ubuntu|ubuntu: 22.04.3 LTS (Jammy Jellyfish)]``.
    Windows: ``Microsoft Windows 10 Pro [Ver: 10.0.19045] |host |x86_64``-like strings.
    """
    if " [Ver: " in uname:
        win_name, _, rest = uname.partition(" [Ver: ")
        win_version, bracket, tail = rest.partition("]")
        win_arch = None
        if bracket and "|" in tail:
            win_arch = tail.rsplit("|", 1)[1].strip().split(" ")[0] or None
        return OsInfo(
            name=win_name,
            version=win_version,
            major=_match(_MAJOR, win_version),
            minor=_match(_MINOR, win_version),
            build=_match(_BUILD, win_version),
            platform="windows",
            arch=win_arch,
        )
    name: str | None = None
    version = major = minor = codename = platform = None
    if " [" in uname:
        name = uname.split(" [", 1)[1]
        if ": " in name:
            name, version = name.split(": ", 1)
            version = version.removesuffix("]")
            if " (" in version:
                version, codename = version.split(" (", 1)
                codename = codename.removesuffix(")")
            major = _match(_MAJOR, version)
            minor = _match(_MINOR, version) or _match(_SUSE_MINOR, version)
        else:
            name = name.removesuffix("]")
        if "|" in name:
            name, platform = name.split("|", 1)
    return OsInfo(
        name=name,
        version=version,
        major=major,
        minor=minor,
        codename=codename,
        platform=platform,
        arch=_arch(uname),
    )


def short_uname(uname: str) -> str:
    """The uname as Wazuh stores it (``os_uname``): the text before the OS bracket
    (`` [Ubuntu|ubuntu: ...]`` or `` [Ver: ...]``), e.g. ``Linux |web01 |5.15 |#1 SMP |x86_64``."""
    cut = uname.find(" [")
    return uname if cut < 0 else uname[:cut]


@frozen
class Label:
    """One label line of a keep-alive: ``"key":value`` (``!`` hidden, ``#`` system)."""

    key: str
    value: str
    hidden: bool = False
    system: bool = False


def parse_label(line: str) -> Label | None:
    """Read a keep-alive label line (``"env":prod``, ``!"owner":me``, ``#"_agent_ip":x``).

    The key is the text between the quotes and the value what follows ``":``, as the
    agent writes them (``labels_format``); None when the line is not shaped so.
    """
    hidden = line.startswith("!")
    system = line.startswith("#")
    text = line[1:] if hidden or system else line
    if not text.startswith('"'):
        return None
    key, sep, value = text[1:].partition('":')
    if not sep or not key:
        return None
    return Label(key, value, hidden, system)


def label_pairs(lines: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """The agent's own labels as ``(key, value)`` pairs: system labels are left out (the
    manager derives them) and a hidden label's key keeps a leading ``!``."""
    pairs = []
    for line in lines:
        label = parse_label(line)
        if label is None or label.system:
            continue
        pairs.append(("!" + label.key if label.hidden else label.key, label.value))
    return tuple(pairs)


def parse_keepalive(body: str) -> KeepAliveData:
    """Parse a keep-alive body (the text after ``#!-``).

    The body must contain a newline; whatever follows the last newline is dropped, as
    Wazuh does. Lines starting with ``#``, ``!`` or ``"`` are labels (``#"_agent_ip":`` gives
    the agent IP), the line with `` - `` is ``<uname> - <version> / <agent.conf md5>``, and a
    line ``<md5> merged.mg`` gives the shared configuration sum.
    """
    if "\n" not in body:
        raise ControlError("keep-alive without a newline")
    body = body[: body.rindex("\n")]
    uname = version = config_sum = merged_sum = agent_ip = None
    os_info = OsInfo()
    labels: list[str] = []
    for line in body.split("\n"):
        if not line:
            continue
        if line[0] in '#!"':
            if line.startswith(AGENT_IP_LABEL):
                agent_ip = line[len(AGENT_IP_LABEL) :] or None
            else:
                labels.append(line)
        elif " - " in line and uname is None:
            uname, _, rest = line.partition(" - ")
            os_info = parse_uname(uname)
            if " / " in rest:
                version, _, config_sum = rest.partition(" / ")
            elif "Wazuh" in rest:
                version = rest[rest.index("Wazuh") :]
        elif " " in line:
            sum_, _, name = line.partition(" ")
            if name.startswith(SHARED_FILE[:-1]):
                merged_sum = sum_
    return KeepAliveData(
        uname=uname,
        os=os_info,
        version=version,
        config_sum=config_sum or None,
        merged_sum=merged_sum,
        labels=tuple(labels),
        agent_ip=agent_ip,
    )


def parse_startup(text: str) -> Startup:
    """Parse ``#!-agent startup {json}``: the version, when the JSON holds one."""
    brace = text.find("{")
    info = None
    if brace >= 0:
        try:
            info = json.loads(text[brace:])
        except ValueError:
            info = None
    if not isinstance(info, dict):
        return Startup(None, has_info=False)
    version = info.get("version")
    return Startup(version if isinstance(version, str) else None)


_VERSION = re.compile(r"^(?:Wazuh )?v?(\d+)\.(\d+)(?:\.(\d+))?")


def version_tuple(version: str) -> tuple[int, int, int] | None:
    """``"v4.14.7"`` → ``(4, 14, 7)``; None when the text is not a version."""
    found = _VERSION.match(version.strip())
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def parse_agent_control(message: str) -> AgentControl:
    """Classify a control message received from an agent (``message`` starts with ``#!-``)."""
    if not message.startswith(CONTROL_HEADER):
        raise ControlError("not a control message")
    if message.startswith(STARTUP_PREFIX):
        return parse_startup(message)
    if message == SHUTDOWN:
        return Shutdown()
    if message.startswith(REQUEST_PREFIX):
        return Request(message[len(REQUEST_PREFIX) :])
    body = message[len(CONTROL_HEADER) :]
    if "\n" in body:
        return KeepAlive(parse_keepalive(body))
    return OtherControl(body)


class AgentEventText(NamedTuple):
    """The three fields of an event message (a tuple: one per event)."""

    queue: str
    location: str
    message: str


def parse_event(message: str) -> AgentEventText:
    """Split ``<queue>:<location>:<message>``; raises :class:`ControlError` when malformed."""
    if len(message) < 4 or message[1] != ":" or message[0] not in QUEUES:
        raise ControlError("event does not start with '<queue>:'")
    location, sep, text = message[2:].partition(":")
    if not sep or not location:
        raise ControlError("event has no '<location>:'")
    return AgentEventText(message[0], location, text)


# --------------------------------------------------------------------------- formatting


def format_startup(version: str) -> str:
    """``#!-agent startup {"version":"v4.x.y"}``."""
    return STARTUP_PREFIX + json.dumps({"version": version}, separators=(",", ":"))


def format_keepalive(
    uname: str,
    version: str,
    config_sum: str | None,
    labels: tuple[str, ...] | list[str],
    merged_sum: str | None,
    agent_ip: str | None,
) -> str:
    """A keep-alive as the 4.x agent writes it (``notify.c``)."""
    head = f"{CONTROL_HEADER}{uname} - {version}"
    if config_sum:
        head += f" / {config_sum}"
    text = head + "\n" + "".join(label + "\n" for label in labels)
    text += f"{merged_sum or NO_MERGED_SUM} {SHARED_FILE}\n"
    if agent_ip:
        text += f"{AGENT_IP_LABEL}{agent_ip}\n"
    return text


def format_event(queue: str, location: str, message: str) -> str:
    """``<queue>:<location>:<message>``."""
    return f"{queue}:{location}:{message}"


def format_file_update(md5: str, name: str = SHARED_FILE) -> str:
    """``#!-up file <md5> <name>\\n``: announces a shared file."""
    return f"{FILE_UPDATE_PREFIX}{md5} {name}\n"


def format_error(message: str) -> str:
    """``#!-err {"message": ...}``: the manager refuses a startup."""
    return ERROR_PREFIX + json.dumps({"message": message}, separators=(",", ":"))


# --------------------------------------------------------------------------- manager side


@frozen
class Ack:
    """``#!-agent ack ``."""


@frozen
class FileUpdate:
    """``#!-up file <md5> <name>``: the following plain messages are the file's content."""

    md5: str
    name: str


@frozen
class FileClose:
    """``#!-close file ``: the file announced last is complete."""


@frozen
class ForceReconnect:
    """``#!-force_reconnect``."""


@frozen
class ManagerError:
    """``#!-err {json}``."""

    message: str


@frozen
class ManagerOther:
    """Any other control message from the manager (``execd``, ``req``...)."""

    text: str


@frozen
class FileChunk:
    """A message that is not a control message: a piece of the file being received."""

    data: bytes


ManagerMessage = (
    Ack | FileUpdate | FileClose | ForceReconnect | ManagerError | ManagerOther | FileChunk
)


def parse_manager_message(message: bytes) -> ManagerMessage:
    """Classify a decrypted message received by an agent from the manager."""
    if not message.startswith(CONTROL_HEADER.encode()):
        return FileChunk(message)
    text = message.decode("utf-8", "replace")
    if text == ACK:
        return Ack()
    if text.startswith(FILE_UPDATE_PREFIX):
        fields = text[len(FILE_UPDATE_PREFIX) :].rstrip("\n").split(" ", 1)
        if len(fields) != 2 or not _MD5.match(fields[0]) or not fields[1]:
            raise ControlError("file update without '<md5> <name>'")
        name = fields[1]
        if "/" in name or name.startswith(".") or "\x00" in name:
            raise ControlError(f"unsafe shared file name {name!r}")
        return FileUpdate(fields[0], name)
    if text.startswith(FILE_CLOSE.rstrip()):
        return FileClose()
    if text.startswith(FORCE_RECONNECT):
        return ForceReconnect()
    if text.startswith(ERROR_PREFIX):
        try:
            info = json.loads(text[len(ERROR_PREFIX) :])
        except ValueError:
            info = None
        detail = info.get("message") if isinstance(info, dict) else None
        return ManagerError(detail if isinstance(detail, str) else text)
    return ManagerOther(text[len(CONTROL_HEADER) :])
