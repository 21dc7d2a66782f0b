"""The node's configuration, read from the ``<cluster>`` block of etc/wazuh-manager.conf.

Every cluster option is parsed and validated here and nowhere else; a bad file is a single
:class:`~wazuhcluster.config.xmlconfig.ConfigError` line naming the file, the option and the reason.
Other sections (``<auth>``, ``<remote>``, ``<ruleset>``...) are parsed by their own rooms'
section parsers and gathered here into one :class:`NodeConfig`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import Element

import attrs
from attrs import frozen
from defusedxml import ElementTree as SafeElementTree

from wazuhcluster.config.failover_settings import FailoverSettings, parse_failover
from wazuhcluster.config.home import Home
from wazuhcluster.config.listener_settings import CLUSTER_LIMITS, CONTROL_LIMITS, parse_limits
from wazuhcluster.config.xmlconfig import ConfigError, Section
from wazuhcluster.util.limits import ListenerLimits

#: The largest configuration file we agree to read.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

NODE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
CLUSTER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
KEY_PATTERN = re.compile(r"[A-Za-z0-9]{32}")
NODE_TYPES = ("master", "worker")
#: Addresses Wazuh refuses as the master's address, since a worker cannot reach them.
FORBIDDEN_MASTER_ADDRESSES = ("localhost", "0.0.0.0", "127.0.1.1")


@frozen
class Timings:
    """Every interval and timeout of the cluster, in seconds (Wazuh's cluster.json defaults).

    They can be overridden under ``<cluster><timings>`` so tests and demos can shrink them.
    """

    keep_alive: float = 60.0
    max_failed_keepalives: int = 2
    reaper_interval: float = 60.0
    max_silence: float = 120.0
    reconnect: float = 10.0
    reconnect_max: float = 60.0
    request_timeout: float = 20.0
    sync_integrity: float = 9.0
    local_integrity: float = 8.0
    sync_agent_info: float = 10.0
    local_agent_groups: float = 10.0
    agent_groups_mismatch_limit: int = 5
    max_locked_integrity: float = 1000.0
    receive_file_timeout: float = 120.0


_TIMING_NAMES = tuple(field.name for field in attrs.fields(Timings))


@frozen
class TlsPaths:
    """Where the cluster CA and this node's certificate and private key live."""

    ca_cert: Path
    node_cert: Path
    node_key: Path


@frozen
class ClusterConfig:
    """The ``<cluster>`` block, validated."""

    name: str
    node_name: str
    node_type: str
    key: str
    port: int
    bind_addr: str
    master_address: str
    hidden: bool
    disabled: bool
    tls: TlsPaths
    timings: Timings
    warnings: tuple[str, ...] = ()
    #: Concurrent cluster connections the master accepts from one address (Wazuh: 10).
    max_connections_per_ip: int = 10
    #: Connection limits of 1516 (``max_per_address`` is ``max_connections_per_ip``) and of
    #: the control socket (``<cluster><control_socket>``); see config/listener_settings.py.
    limits: ListenerLimits = CLUSTER_LIMITS
    control_limits: ListenerLimits = CONTROL_LIMITS
    #: ``<failover>``: the master elected through etcd (None: one fixed master, as in Wazuh).
    failover: FailoverSettings | None = None


@frozen
class NodeConfig:
    """Everything a node reads from its configuration file."""

    source: Path
    home: Home
    cluster: ClusterConfig
    root: Element = attrs.field(eq=False, repr=False)

    def section(self, name: str) -> Section:
        """Return the last ``<name>`` block of the file as a :class:`Section` (empty if absent)."""
        return Section(_last_block(self.root, name), str(self.source), name)

    def sections(self, name: str) -> list[Section]:
        """Every ``<name>`` block of the file, in order (``<remote>`` may appear twice)."""
        return [Section(block, str(self.source), name) for block in self.root.findall(name)]


def read_xml(path: Path) -> Element:
    """Read a Wazuh-style configuration file into one element holding every top-level block.

    Wazuh files may hold several ``<ossec_config>``/``<wazuh_config>`` roots one after another,
    so they are wrapped in a synthetic root before parsing. External entities and entity
    expansion are refused (defusedxml).
    """
    source = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(source, "file", error.strerror or str(error)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(source, "file", f"larger than {MAX_CONFIG_BYTES} bytes")
    text = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", data)
    try:
        wrapper = SafeElementTree.fromstring(b"<root>" + text + b"</root>")
    except Exception as error:  # defusedxml raises several unrelated types
        raise ConfigError(source, "file", f"invalid XML: {error}") from None
    roots = [child for child in wrapper if child.tag in ("wazuh_config", "ossec_config")]
    if not roots:
        raise ConfigError(source, "wazuh_config", "no <wazuh_config> block found")
    merged = Element("wazuh_config")
    for root in roots:
        merged.extend(list(root))
    return merged


def _last_block(root: Element, name: str) -> Element | None:
    blocks = root.findall(name)
    return blocks[-1] if blocks else None


def _check_key(value: str) -> str | None:
    if not value:
        return "unspecified key"
    if not KEY_PATTERN.fullmatch(value):
        return "the key must be exactly 32 alphanumeric characters"
    return None


def _check_pattern(pattern: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if pattern.fullmatch(value) is None:
            return f"invalid {what} {value!r}: use letters, digits, '_' or '-'"
        return None

    return check


def _check_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
            return f"{value!r} is neither an IP address nor a host name"
    return None


def parse_timings(section: Section) -> Timings:
    """Read ``<cluster><timings>`` overrides; unknown names are errors so typos are caught."""
    if section.element is None:
        return Timings()
    values: dict[str, float | int] = {}
    for child in section.element:
        if child.tag not in _TIMING_NAMES:
            raise section.error(child.tag, f"unknown timing; known: {', '.join(_TIMING_NAMES)}")
    defaults = Timings()
    for name in _TIMING_NAMES:
        default = getattr(defaults, name)
        if isinstance(default, int):
            values[name] = section.integer(name, default, 1, 1000)
        else:
            values[name] = section.duration(name, default)
    return Timings(**values)  # type: ignore[arg-type]


def parse_cluster(section: Section, home: Home, role: str | None) -> ClusterConfig:
    """Validate the ``<cluster>`` block; ``role`` is the ``--role`` given on the command line."""
    name = section.checked("name", "wazuh", _check_pattern(CLUSTER_NAME_PATTERN, "cluster name"))
    node_name = section.checked(
        "node_name", "node01", _check_pattern(NODE_NAME_PATTERN, "node name")
    )
    configured_type = section.raw("node_type")
    if configured_type == "client":  # Wazuh 4.x still accepts the old name for a worker
        configured_type = "worker"
    if configured_type is not None and configured_type not in NODE_TYPES:
        raise section.error(
            "node_type", f"invalid node type {configured_type!r}: use master or worker"
        )
    if role is not None and configured_type is not None and role != configured_type:
        raise section.error(
            "node_type", f"the config says {configured_type!r} but --role says {role!r}"
        )
    node_type = role or configured_type or "master"
    disabled = section.boolean("disabled", False)
    key = section.text("key", "")
    if not disabled:
        reason = _check_key(key)
        if reason:
            raise section.error("key", reason)
    port = section.integer("port", 1516, 1, 65535)
    bind_addr = section.checked("bind_addr", "0.0.0.0", _check_address)
    warnings: list[str] = []
    nodes_section = Section(
        section.element.find("nodes") if section.element is not None else None,
        section.source,
        "cluster><nodes",
    )
    nodes = nodes_section.all_raw("node")
    if len(nodes) > 1:
        warnings.append(f"{len(nodes)} <node> entries found: only the first ({nodes[0]}) is used")
    master_address = nodes[0] if nodes else "127.0.0.1"
    if master_address in FORBIDDEN_MASTER_ADDRESSES:
        raise section.error("nodes><node", f"{master_address!r} cannot be reached by workers")
    reason = _check_address(master_address)
    if reason:
        raise section.error("nodes><node", reason)
    tls = TlsPaths(
        ca_cert=section.path("ca_cert", base=home.root, default=home.certs / "ca.pem"),
        node_cert=section.path("node_cert", base=home.root, default=home.certs / "node.pem"),
        node_key=section.path("node_key", base=home.root, default=home.certs / "node.key"),
    )
    timings_element = section.element.find("timings") if section.element is not None else None
    timings = parse_timings(Section(timings_element, section.source, "cluster><timings"))
    per_ip = section.integer("max_connections_per_ip", 10, 1, 100000)
    limits = attrs.evolve(parse_limits(section, CLUSTER_LIMITS), max_per_address=per_ip)
    control_element = (
        section.element.find("control_socket") if section.element is not None else None
    )
    control = Section(control_element, section.source, "cluster><control_socket")
    failover_element = section.element.find("failover") if section.element is not None else None
    failover, failover_warnings = parse_failover(
        Section(failover_element, section.source, "cluster><failover"),
        home.root,
        name,
        node_name,
        node_type,
    )
    warnings.extend(failover_warnings)
    return ClusterConfig(
        name=name,
        node_name=node_name,
        node_type=node_type,
        key=key,
        port=port,
        bind_addr=bind_addr,
        master_address=master_address,
        hidden=section.boolean("hidden", False),
        disabled=disabled,
        tls=tls,
        timings=timings,
        warnings=tuple(warnings),
        max_connections_per_ip=per_ip,
        limits=limits,
        control_limits=parse_limits(control, CONTROL_LIMITS),
        failover=failover,
    )


def load_config(path: Path, home: Home, role: str | None = None) -> NodeConfig:
    """Read and validate a node's configuration file.

    Raises :class:`ConfigError` for a missing file, bad XML or any bad cluster option.
    """
    root = read_xml(path)
    section = Section(_last_block(root, "cluster"), str(path), "cluster")
    cluster = parse_cluster(section, home, role)
    return NodeConfig(source=path, home=home, cluster=cluster, root=root)
