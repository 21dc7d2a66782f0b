"""``wazuh-cluster-certs``: create the cluster CA and sign node certificates.

Typical use on the master::

    wazuh-cluster-certs --home /var/wazuh-manager ca
    wazuh-cluster-certs --home /var/wazuh-manager node master-1 --address 10.0.0.1
    wazuh-cluster-certs --home /var/wazuh-manager node worker-1 --address 10.0.0.2 --out /tmp/w1

then copy /tmp/w1/{ca.pem,node.pem,node.key} into the worker's HOME/etc/certs/.
Private keys are written with mode 0600.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wazuhcluster.config.home import DEFAULT_HOME, Home
from wazuhcluster.util.files import write_atomically as write
from wazuhcluster.util.tls import KeyPair, TlsError, create_ca, issue_node_certificate


def build_parser() -> argparse.ArgumentParser:
    """The command line of wazuh-cluster-certs."""
    parser = argparse.ArgumentParser(prog="wazuh-cluster-certs", description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="the node's home directory")
    sub = parser.add_subparsers(dest="action", required=True)
    ca = sub.add_parser("ca", help="create the cluster CA in HOME/etc/certs (ca.pem, ca.key)")
    ca.add_argument("--force", action="store_true", help="replace an existing CA")
    ca.add_argument("--name", default="wazuhcluster CA", help="the CA's common name")
    node = sub.add_parser("node", help="sign a node certificate with the CA in HOME/etc/certs")
    node.add_argument("name", help="the node name (<cluster><node_name>)")
    node.add_argument(
        "--address", action="append", default=[], help="an IP or DNS name the node is reached at"
    )
    node.add_argument("--out", help="where to write ca.pem, node.pem, node.key (HOME/etc/certs)")
    return parser


def make_ca(home: Home, name: str, force: bool) -> Path:
    """Create HOME/etc/certs/ca.pem and ca.key unless they exist (or ``force``)."""
    cert_path, key_path = home.certs / "ca.pem", home.certs / "ca.key"
    if cert_path.exists() and not force:
        raise TlsError(f"{cert_path} already exists (use --force to replace it)")
    pair = create_ca(name)
    write(key_path, pair.key_pem, 0o600)
    write(cert_path, pair.cert_pem, 0o644)
    return cert_path


def make_node(home: Home, name: str, addresses: Sequence[str], out: Path | None) -> Path:
    """Sign a certificate for node ``name`` and write it with the CA certificate into ``out``."""
    try:
        ca = KeyPair((home.certs / "ca.pem").read_bytes(), (home.certs / "ca.key").read_bytes())
    except OSError as error:
        raise TlsError(
            f"cannot read the CA in {home.certs}: {error.strerror} (run 'wazuh-cluster-certs ca')"
        ) from None
    pair = issue_node_certificate(ca, name, addresses)
    target = out or home.certs
    write(target / "node.key", pair.key_pem, 0o600)
    write(target / "node.pem", pair.cert_pem, 0o644)
    if target != home.certs:
        write(target / "ca.pem", ca.cert_pem, 0o644)
    return target


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    args = build_parser().parse_args(argv)
    home = Home(Path(args.home))
    try:
        if args.action == "ca":
            print(f"Created the cluster CA {make_ca(home, args.name, args.force)}")
        else:
            out = Path(args.out) if args.out else None
            target = make_node(home, args.name, args.address, out)
            print(f"Signed a certificate for {args.name} in {target}")
    except TlsError as error:
        print(f"wazuh-cluster-certs: {error}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
