"""``<cluster><failover>``: the master elected through etcd (see README "Failover").

Without the block nothing changes: one master, no etcd. With it::

    <failover>
      <etcd>
        <endpoint>https://10.0.0.11:2379</endpoint>   <!-- one or more -->
        <ca>etc/etcd/ca.pem</ca>                      <!-- https: the CA of etcd's certificate -->
        <cert>etc/etcd/client.pem</cert>              <!-- with key: client certificate auth -->
        <key>etc/etcd/client.key</key>
      </etcd>
      <lease_ttl>10s</lease_ttl>                       <!-- whole seconds, 2 to 300 -->
      <candidates>
        <node>master-a</node>
        <node>master-b</node>
      </candidates>
      <prefix>/wazuhcluster/wazuh/</prefix>   <!-- default: /wazuhcluster/<cluster name>/ -->
    </failover>

Relative TLS paths are taken from the node's home; the files must exist when the
configuration is checked.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from attrs import frozen

from wazuhcluster.config.xmlconfig import Section

DEFAULT_LEASE_TTL = 10
MIN_LEASE_TTL = 2
MAX_LEASE_TTL = 300
_NODE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HOST_NAME = re.compile(r"[A-Za-z0-9.-]{1,253}")
_PREFIX = re.compile(r"/[A-Za-z0-9_./-]{0,200}/")


@frozen
class EtcdTlsPaths:
    """Client TLS material for etcd (each None when not given)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@frozen
class FailoverSettings:
    """The validated ``<cluster><failover>`` block."""

    endpoints: tuple[str, ...]
    candidates: tuple[str, ...]
    lease_ttl: int = DEFAULT_LEASE_TTL
    tls: EtcdTlsPaths = EtcdTlsPaths()
    #: Every key of this cluster in etcd starts with it.
    prefix: str = "/wazuhcluster/wazuh/"

    @property
    def leader_key(self) -> str:
        """The key whose holder is the master."""
        return self.prefix + "leader"


def _check_endpoint(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        return f"{value!r} is not a URL: {error}"
    if parts.scheme not in ("http", "https"):
        return f"{value!r} must start with http:// or https://"
    host = parts.hostname or ""
    if not host:
        return f"{value!r} names no host"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            return f"{value!r}: {host!r} is neither an IP address nor a host name"
    if port is None:
        return f"{value!r} names no port (etcd's client port is usually 2379)"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return f"{value!r} must be just scheme://host:port"
    return None


def _tls_file(section: Section, option: str, home: Path) -> Path | None:
    if section.raw(option) is None:
        return None
    path = section.path(option, default=Path(), base=home)
    if not path.is_file():
        raise section.error(option, f"{path} is not a readable file")
    return path


def parse_failover(
    section: Section, home: Path, cluster_name: str, node_name: str, node_type: str
) -> tuple[FailoverSettings | None, list[str]]:
    """Validate ``<cluster><failover>``; None when the block is absent. Returns warnings too."""
    if section.element is None:
        return None, []
    warnings: list[str] = []
    etcd = Section(section.element.find("etcd"), section.source, f"{section.name}><etcd")
    endpoints = etcd.all_raw("endpoint")
    if not endpoints:
        raise etcd.error("endpoint", "at least one etcd endpoint is needed")
    for endpoint in endpoints:
        reason = _check_endpoint(endpoint)
        if reason is not None:
            raise etcd.error("endpoint", reason)
    if len(set(endpoints)) != len(endpoints):
        raise etcd.error("endpoint", "an endpoint is listed twice")
    schemes = {urlsplit(endpoint).scheme for endpoint in endpoints}
    if len(schemes) > 1:
        raise etcd.error("endpoint", "use https:// for every endpoint or for none")
    tls = EtcdTlsPaths(
        ca=_tls_file(etcd, "ca", home),
        cert=_tls_file(etcd, "cert", home),
        key=_tls_file(etcd, "key", home),
    )
    if (tls.cert is None) != (tls.key is None):
        raise etcd.error("cert" if tls.cert is None else "key", "give both <cert> and <key>")
    if schemes == {"http"} and (tls.ca or tls.cert):
        raise etcd.error("endpoint", "TLS material is given but the endpoints are http://")
    if schemes == {"http"}:
        warnings.append(
            "failover: etcd is reached over plain http; use https:// with <ca>, <cert> and "
            "<key> outside a test bench"
        )
    ttl_seconds = section.duration("lease_ttl", float(DEFAULT_LEASE_TTL), minimum=MIN_LEASE_TTL)
    if ttl_seconds != int(ttl_seconds) or ttl_seconds > MAX_LEASE_TTL:
        raise section.error(
            "lease_ttl", f"use whole seconds from {MIN_LEASE_TTL} to {MAX_LEASE_TTL}"
        )
    candidates_section = Section(
        section.element.find("candidates"), section.source, f"{section.name}><candidates"
    )
    candidates = candidates_section.all_raw("node")
    if not candidates:
        raise candidates_section.error("node", "name at least one master candidate")
    for name in candidates:
        if not _NODE_NAME.fullmatch(name):
            raise candidates_section.error(
                "node", f"invalid node name {name!r}: use letters, digits, '_' or '-'"
            )
    if len(set(candidates)) != len(candidates):
        raise candidates_section.error("node", "a candidate is listed twice")
    if len(candidates) == 1:
        warnings.append(
            f"failover: {candidates[0]} is the only master candidate: nothing can take over"
        )
    if node_type == "master" and node_name not in candidates:
        raise candidates_section.error(
            "node", f"this node ({node_name}) is a master but not among the candidates"
        )
    prefix = section.text("prefix", f"/wazuhcluster/{cluster_name}/")
    if not _PREFIX.fullmatch(prefix) or "//" in prefix or "/../" in prefix:
        raise section.error("prefix", f"{prefix!r}: use a path like /wazuhcluster/name/")
    return (
        FailoverSettings(
            endpoints=tuple(endpoint.rstrip("/") for endpoint in endpoints),
            candidates=tuple(candidates),
            lease_ttl=int(ttl_seconds),
            tls=tls,
            prefix=prefix,
        ),
        warnings,
    )
