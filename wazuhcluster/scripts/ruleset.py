"""``wazuh-cluster-ruleset``: install Wazuh's ruleset into a node's home, or say which it has.

::

    wazuh-cluster-ruleset --home /var/wazuh-manager install --from wazuh-4.14.7.tar.gz
    wazuh-cluster-ruleset --home /var/wazuh-manager install --from ~/src/wazuh --ref v4.14.7
    wazuh-cluster-ruleset --home /var/wazuh-manager install --version 4.14.7
    wazuh-cluster-ruleset --home /var/wazuh-manager status

``--from`` takes a Wazuh source archive (.tar.gz), an extracted source tree (or a ruleset folder
such as HOME/ruleset.old), or a git checkout with ``--ref TAG``. ``--version`` downloads
Wazuh's source archive for that tag from ``--base-url`` (or $WAZUHCLUSTER_RULESET_URL, by
default GitHub's tag archives), bounded in size and time. The new tree is loaded with the
node's own settings before it replaces HOME/ruleset in one step (see
:mod:`wazuhcluster.analysis.ruleset_install`); a running node is then asked to reload it.

Exit status: 0 done, 1 failed (one line on stderr; the home keeps its ruleset), 2 wrong
arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.protocols import amp

from wazuhcluster import __version__
from wazuhcluster.analysis.ruleset_install import (
    InstallError,
    Result,
    Source,
    extract_archive,
    find_ruleset,
    install,
    status,
    version_from_name,
)
from wazuhcluster.config.home import DEFAULT_HOME, MAX_UNIX_PATH, Home
from wazuhcluster.config.xmlconfig import ConfigError
from wazuhcluster.control import commands
from wazuhcluster.scripts.logtest import read_settings
from wazuhcluster.util.interfaces import INodeReactor

PROG = "wazuh-cluster-ruleset"
DEFAULT_BASE_URL = "https://github.com/wazuh/wazuh/archive/refs/tags"
BASE_URL_ENV = "WAZUHCLUSTER_RULESET_URL"
#: Wazuh 4.14's source archive is well below this.
MAX_DOWNLOAD_MB = 512
DOWNLOAD_SECONDS = 600.0
#: How long one read from the server may stall.
READ_TIMEOUT = 30.0
CHUNK = 64 * 1024
GIT_SECONDS = 300.0
RELOAD_SECONDS = 120.0

Reload = Callable[[Home], str]


# --- getting the source ------------------------------------------------------------------------


def archive_url(base: str, version: str) -> str:
    """The source archive of Wazuh ``version`` under ``base`` (GitHub's layout)."""
    return f"{base.rstrip('/')}/v{version}.tar.gz"


def download(
    url: str,
    target: str,
    max_bytes: int,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Fetch ``url`` into the file ``target``; at most ``max_bytes`` within ``seconds``.

    Returns the size; InstallError when the server refuses, stalls, or sends too much.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InstallError(f"cannot download {url}: only http and https are supported")
    deadline = clock() + seconds
    request = urllib.request.Request(url, headers={"User-Agent": f"wazuhcluster/{__version__}"})
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=min(seconds, READ_TIMEOUT)) as answer:
            length = answer.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise InstallError(f"{url} is larger than {max_bytes} bytes ({length})")
            with open(target, "wb") as output:
                while True:
                    if clock() > deadline:
                        raise InstallError(f"downloading {url} took longer than {seconds:g} s")
                    chunk = answer.read1(CHUNK)  # returns what one read brings: no slow drip
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise InstallError(f"{url} is larger than {max_bytes} bytes")
                    output.write(chunk)
    except urllib.error.HTTPError as error:
        raise InstallError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise InstallError(f"cannot download {url}: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise InstallError(f"cannot download {url}: {error or type(error).__name__}") from None
    return size


def _git(checkout: str, *args: str, **options: Any) -> subprocess.CompletedProcess[Any]:
    try:
        return subprocess.run(
            ["git", "-C", checkout, *args],
            check=False,
            timeout=GIT_SECONDS,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            stdin=subprocess.DEVNULL,
            **options,
        )
    except FileNotFoundError:
        raise InstallError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"git in {checkout} took longer than {GIT_SECONDS:g} s") from None


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def git_archive(checkout: str, ref: str, target: str) -> str:
    """Write the ``ruleset/`` of ``ref`` in the git checkout as a tar file; return the commit."""
    if ref.startswith("-"):
        raise InstallError(f"{ref!r} is not a git ref")
    found = _git(
        checkout, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", capture_output=True
    )
    if found.returncode != 0:
        raise InstallError(f"{checkout} has no ref {ref}")
    commit = found.stdout.decode().strip()
    with open(target, "wb") as output:
        made = _git(
            checkout,
            "archive",
            "--format=tar",
            commit,
            "--",
            "ruleset",
            stdout=output,
            stderr=subprocess.PIPE,
        )
    if made.returncode != 0:
        raise InstallError(f"git archive of {ref} in {checkout} failed: {_last_line(made.stderr)}")
    return commit


def is_git_checkout(path: str) -> bool:
    """Whether ``path`` is inside a git work tree or is a bare repository."""
    answer = _git(path, "rev-parse", "--git-dir", capture_output=True)
    return answer.returncode == 0


def get_source(args: argparse.Namespace, work: str, say: Callable[[str], None]) -> Source:
    """Find, extract or download the ruleset the arguments name, into ``work`` if needed."""
    extracted = os.path.join(work, "source")
    if args.version:
        version = version_from_name(args.version)
        assert version is not None  # checked by the parser
        url = archive_url(
            args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL, version
        )
        archive = os.path.join(work, "download.tar.gz")
        say(f"Downloading {url}")
        size = download(url, archive, args.max_download * 1024 * 1024, args.timeout)
        say(f"Downloaded {size} bytes.")
        return attrs.evolve(extract_archive(archive, extracted, url), version=version)
    path = os.path.abspath(os.path.expanduser(args.source))
    if args.ref:
        if not os.path.isdir(path) or not is_git_checkout(path):
            raise InstallError(f"{args.source} is not a git checkout (--ref needs one)")
        archive = os.path.join(work, "git.tar")
        commit = git_archive(path, args.ref, archive)
        source = extract_archive(archive, extracted, f"{args.source} at {args.ref}")
        return attrs.evolve(
            source,
            version=version_from_name(args.ref) or source.version,
            label=f"{path} at {args.ref} ({commit[:12]})",
        )
    if os.path.isdir(path):
        return find_ruleset(path)
    if os.path.isfile(path):
        return extract_archive(path, extracted, path)
    raise InstallError(f"{args.source}: no such file or directory")


# --- reloading a running node ------------------------------------------------------------------


async def ask_reload(
    reactor: INodeReactor, socket: str, seconds: float = RELOAD_SECONDS
) -> str | None:
    """Ask the node listening on ``socket`` to reload its ruleset; its answer, or None when
    no node listens there."""
    endpoint = UNIXClientEndpoint(reactor, socket, timeout=10)
    try:
        protocol = await connectProtocol(endpoint, amp.AMP())
    except (ConnectError, FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        asked = protocol.callRemote(commands.ReloadRuleset)
        asked.addTimeout(seconds, reactor)
        answer = await asked
    except commands.ControlError as error:
        if "no analysis" in str(error):
            return "The node runs no analysis: nothing to reload."
        raise InstallError(f"installed, but the node refused to reload it: {error}") from None
    except TimeoutError:
        raise InstallError(
            f"installed, but the node did not reload it within {seconds:g} s "
            "(see its cluster.log; wazuh-cluster-control --reload-ruleset retries)"
        ) from None
    finally:
        protocol.transport.loseConnection()
    return str(answer["message"])


def reload_node(home: Home) -> str:
    """Ask the node of ``home`` to reload its ruleset, if one runs; one line saying what
    happened (InstallError when it runs and could not)."""
    not_running = f"No node is running in {home.root}: it loads this ruleset when it starts."
    socket = str(home.control_socket)
    if not home.control_socket.exists():
        return not_running
    if len(socket.encode()) > MAX_UNIX_PATH:
        raise InstallError(f"installed, but the control socket path {socket} is too long")
    outcome: dict[str, Any] = {}

    async def main(reactor: INodeReactor) -> None:
        try:
            outcome["message"] = await ask_reload(reactor, socket)
        except InstallError as error:
            outcome["error"] = error

    from twisted.internet.task import react

    try:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)), [])
    except SystemExit:  # react() always ends by raising SystemExit
        pass
    if "error" in outcome:
        raise outcome["error"]
    message = outcome.get("message")
    return not_running if message is None else f"The running node: {message}"


# --- the command line --------------------------------------------------------------------------


def _version(text: str) -> str:
    if version_from_name(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Wazuh version such as 4.14.7")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of wazuh-cluster-ruleset."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Install Wazuh's ruleset into a node's home, or show which it has."
    )
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="the node's home directory")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("install", help="validate a ruleset and swap it in as HOME/ruleset")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="a Wazuh source archive (.tar.gz), source tree, ruleset folder or git checkout",
    )
    where.add_argument(
        "--version", type=_version, help="download Wazuh's source archive of this tag (4.14.7)"
    )
    add.add_argument("--ref", help="with --from CHECKOUT: the git tag or commit to take")
    add.add_argument(
        "--base-url",
        help=f"with --version: where the v<VERSION>.tar.gz archives are "
        f"(${BASE_URL_ENV}, default {DEFAULT_BASE_URL})",
    )
    add.add_argument(
        "--max-download",
        type=int,
        default=MAX_DOWNLOAD_MB,
        metavar="MB",
        help=f"with --version: the largest archive accepted (default {MAX_DOWNLOAD_MB})",
    )
    add.add_argument(
        "--timeout",
        type=float,
        default=DOWNLOAD_SECONDS,
        metavar="SECONDS",
        help=f"with --version: the longest the download may take (default {DOWNLOAD_SECONDS:g})",
    )
    add.add_argument("--no-reload", action="store_true", help="do not ask a running node to reload")
    show = sub.add_parser("status", help="which ruleset HOME has: version, source, file counts")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.action != "install":
        return
    if args.ref is not None and args.source is None:
        parser.error("--ref goes with --from CHECKOUT")
    if args.version is None and args.base_url is not None:
        parser.error("--base-url goes with --version")
    if args.max_download <= 0 or args.timeout <= 0:
        parser.error("--max-download and --timeout must be positive")


def describe_result(home: Path, result: Result) -> list[str]:
    """What an install did, in a few lines."""
    version = f" {result.version}" if result.version else ""
    lines = [
        f"Installed the Wazuh ruleset{version} from {result.source} into {home / 'ruleset'}: "
        f"{result.counts.describe()}."
    ]
    if result.lists_written:
        lines.append(f"Wrote {len(result.lists_written)} lists into {home / 'etc' / 'lists'}.")
    if result.lists_kept:
        lines.append(
            f"Kept {len(result.lists_kept)} lists edited in etc/lists: "
            + ", ".join(result.lists_kept)
        )
    if result.warnings:
        lines.append(
            f"It loads with {len(result.warnings)} warnings; the first: {result.warnings[0]}"
        )
    if result.previous:
        lines.append(f"The previous ruleset is kept in {result.previous}.")
    return lines


def describe_status(home: Path, answer: dict[str, Any]) -> list[str]:
    """``status`` in a few lines."""
    if not answer["present"]:
        return [
            f"{home} has no ruleset/ yet: a node installs the project's small default set when "
            "it starts (or run: wazuh-cluster-ruleset install)."
        ]
    counts = answer["counts"]
    lines = [
        f"ruleset: {answer['path']}",
        f"version: {answer['version'] or 'unknown'}",
        f"source: {answer['source']}",
    ]
    if answer["installed_at"]:
        lines.append(f"installed: {answer['installed_at']}")
    lines.append(
        f"files: {counts['decoders']} decoder files, {counts['rules']} rule files, "
        f"{counts['lists']} lists, {counts['sca']} SCA policies"
    )
    if "previous" in answer:
        previous = answer["previous"]
        lines.append(f"previous: {previous['path']} ({previous['version'] or 'unknown version'})")
    return lines


def run(
    argv: Sequence[str] | None = None,
    reload: Reload = reload_node,
    say: Callable[[str], None] = print,
) -> int:
    """Parse ``argv`` and do it; return the exit status (argparse exits 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    home = Path(os.path.expanduser(args.home)).absolute()
    try:
        if not home.is_dir():
            raise InstallError(f"{home} is not a directory (the node's home)")
        if args.action == "status":
            answer = status(str(home))
            say(
                json.dumps(answer, indent=2)
                if args.json
                else "\n".join(describe_status(home, answer))
            )
            return 0
        try:
            settings = read_settings(str(home))
        except ConfigError as error:
            raise InstallError(str(error)) from None
        with tempfile.TemporaryDirectory(prefix="wazuhcluster-ruleset-") as work:
            source = get_source(args, work, say)
            result = install(str(home), source, settings)
        for line in describe_result(home, result):
            say(line)
        if not args.no_reload:
            say(reload(Home(home)))
    except InstallError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{PROG}: {error.filename or home}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
