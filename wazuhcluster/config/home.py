"""The node's directory layout: the one place that knows where things live under HOME."""

from __future__ import annotations

import os
from pathlib import Path

from attrs import frozen

DEFAULT_HOME = Path("/var/wazuh-manager")
#: The longest path a UNIX socket address can hold on Linux (sun_path minus its NUL).
MAX_UNIX_PATH = 107


@frozen
class Home:
    """Paths of one node's home directory (default /var/wazuh-manager)."""

    root: Path

    @property
    def etc(self) -> Path:
        """HOME/etc: configuration, keys and the master-owned synced files."""
        return self.root / "etc"

    @property
    def config_file(self) -> Path:
        """HOME/etc/wazuh-manager.conf, the node's own configuration (never synced)."""
        return self.etc / "wazuh-manager.conf"

    @property
    def certs(self) -> Path:
        """HOME/etc/certs: the cluster CA and this node's certificate and key."""
        return self.etc / "certs"

    @property
    def shared(self) -> Path:
        """HOME/etc/shared: group folders with agent.conf and merged.mg."""
        return self.etc / "shared"

    @property
    def client_keys(self) -> Path:
        """HOME/etc/client.keys: one ``ID NAME IP KEY`` line per agent."""
        return self.etc / "client.keys"

    @property
    def authd_pass(self) -> Path:
        """HOME/etc/authd.pass: the enrollment password, when one is used."""
        return self.etc / "authd.pass"

    @property
    def var_db(self) -> Path:
        """HOME/var/db: SQLite databases (the master's registry)."""
        return self.root / "var" / "db"

    @property
    def agents_state(self) -> Path:
        """HOME/var/db/agents: one SQLite database per agent analysed on this node (FIM,
        SCA, rootcheck, inventory)."""
        return self.root / "var" / "db" / "agents"

    @property
    def var_run(self) -> Path:
        """HOME/var/run: the control socket and pid files."""
        return self.root / "var" / "run"

    @property
    def control_socket(self) -> Path:
        """HOME/var/run/cluster.sock, the control socket the CLI talks to."""
        return self.var_run / "cluster.sock"

    @property
    def queue(self) -> Path:
        """HOME/queue/cluster: per-peer working files of the cluster daemon."""
        return self.root / "queue" / "cluster"

    @property
    def logs(self) -> Path:
        """HOME/logs."""
        return self.root / "logs"

    @property
    def cluster_log(self) -> Path:
        """HOME/logs/cluster.log in Wazuh's line format."""
        return self.logs / "cluster.log"

    @property
    def alerts_dir(self) -> Path:
        """HOME/logs/alerts, where alerts.json is written."""
        return self.logs / "alerts"

    @property
    def archives_dir(self) -> Path:
        """HOME/logs/archives, where archives.json and archives.log are written."""
        return self.logs / "archives"

    def make_dirs(self) -> None:
        """Create every directory the node writes to (group-writable, as Wazuh's are)."""
        for path in (
            self.etc,
            self.shared,
            self.etc / "rules",
            self.etc / "decoders",
            self.etc / "lists",
            self.etc / "sca",
            self.var_db,
            self.var_run,
            self.queue,
            self.logs,
            self.alerts_dir,
            self.root / "var" / "multigroups",
        ):
            path.mkdir(parents=True, exist_ok=True, mode=0o770)

    def relative(self, path: Path) -> str:
        """Return ``path`` relative to the home, with forward slashes."""
        return os.path.relpath(path, self.root).replace(os.sep, "/")
