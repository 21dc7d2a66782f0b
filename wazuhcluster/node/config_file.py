"""The node's configuration file: the checks ``twistd wazuhcluster --test-config`` makes, and
its replacement through the API (``PUT /manager/configuration``,
``PUT /cluster/{node_id}/configuration``).

A new file is written next to the current one, checked there with exactly the checks a start
makes (the cluster block, every section, the home path, the TLS material), and only then
renamed over it (fsync of the file and of its folder): a file that would not start the node
never replaces the one that does, and a crash leaves one or the other, whole. As Wazuh's, the
new file takes effect at the node's next restart and no backup is kept once it is in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from wazuhcluster.config.cluster import NodeConfig, load_config
from wazuhcluster.config.home import MAX_UNIX_PATH, Home
from wazuhcluster.config.sections import NodeSections, load_sections
from wazuhcluster.config.xmlconfig import ConfigError
from wazuhcluster.util.tls import TlsError, load_material

#: The largest configuration file accepted through the API (it crosses the cluster link in
#: one AMP value of at most 64 KiB once JSON-encoded).
MAX_CONFIG_BYTES = 48 * 1024


def check_home(config: NodeConfig) -> None:
    """Fail early when the home path is too long for the control socket's UNIX address."""
    socket_path = str(config.home.control_socket)
    if len(socket_path.encode()) > MAX_UNIX_PATH:
        raise ConfigError(
            str(config.source),
            "home",
            f"the control socket path {socket_path} is longer than {MAX_UNIX_PATH} bytes; "
            "use a shorter --home",
        )


def check_tls(config: NodeConfig) -> None:
    """Fail early when a node that uses the cluster lacks its certificate material."""
    cluster = config.cluster
    if cluster.disabled:
        if cluster.node_type == "worker":
            raise ConfigError(
                str(config.source), "cluster><disabled", "a worker needs the cluster enabled"
            )
        return
    load_material(cluster.tls.ca_cert, cluster.tls.node_cert, cluster.tls.node_key)


def check_config_file(path: Path, home: Home, role: str | None) -> tuple[NodeConfig, NodeSections]:
    """Everything a start checks about a configuration file; raises :class:`ConfigError`
    (a TLS problem included) with the reason."""
    config = load_config(path, home, role)
    sections = load_sections(config)
    check_home(config)
    try:
        check_tls(config)
    except TlsError as error:
        raise ConfigError(str(path), "cluster", str(error)) from None
    return config, sections


def replace_config_file(config: NodeConfig, data: bytes) -> None:
    """Replace ``config``'s file by ``data`` if it passes :func:`check_config_file` for this
    node's home and type; else raise :class:`ConfigError` and leave the file as it was.
    Blocking: run it in a thread."""
    target = Path(config.source)
    mode = 0o640
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        pass
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            check_config_file(temp, config.home, config.cluster.node_type)
        except ConfigError as error:
            # The reason names the file the node reads, not the temporary one.
            raise ConfigError(str(target), error.option, error.reason) from None
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
