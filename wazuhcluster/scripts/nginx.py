"""NGINX as the agents' load balancer: render etc/nginx/wazuhcluster-lb.conf and run nginx.

``make demo`` and the load-balancer integration test put a real nginx in front of a local
cluster: :func:`render_stream` fills the template's ``@NAME@`` lines with the nodes'
addresses, :func:`main_config` wraps the result in a minimal nginx.conf whose pid file, logs
and temporary files stay under one prefix directory, and :class:`NginxProcess` runs it in the
foreground (``daemon off``) so its owner can stop it.
``python -m wazuhcluster.scripts.nginx`` prints the rendered block for a real cluster's nodes.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from attrs import define

#: The template in a source checkout (an installed wheel has no etc/).
TEMPLATE = Path(__file__).resolve().parents[2] / "etc" / "nginx" / "wazuhcluster-lb.conf"
PLACEHOLDERS = (
    "@ENROLLMENT_SERVERS@",
    "@AGENT_SERVERS@",
    "@ENROLLMENT_LISTEN@",
    "@AGENTS_LISTEN@",
    "@ACCESS_LOG@",
)
#: Placeholders of the template's UDP section (left out without UDP agents).
UDP_PLACEHOLDERS = ("@AGENT_UDP_SERVERS@", "@AGENTS_UDP_LISTEN@")
UDP_BEGIN = "# -- UDP agents --"
UDP_END = "# -- end of UDP agents --"
#: The log_format the template defines for its access log.
LOG_FORMAT = "wazuhcluster"
#: Where Debian and most builds keep dynamic modules when ``nginx -V`` names none.
MODULE_DIRS = (Path("/usr/lib/nginx/modules"), Path("/usr/share/nginx/modules"))
STREAM_MODULE = "ngx_stream_module.so"
MAX_TEMPLATE = 64 * 1024
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])$")
_LISTEN = re.compile(r"^(?:(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):)?[0-9]{1,5}$")
_OPTIONS = re.compile(r"^[a-z_]{1,20}=[0-9a-z]{1,10}(?: [a-z_]{1,20}=[0-9a-z]{1,10}){0,5}$")
#: A node that refused a connection is skipped for 10 s: enrollment connections are short,
#: so the next success soon marks a recovered node live again.
ENROLLMENT_OPTIONS = "max_fails=1 fail_timeout=10s"
#: A UDP node that refused (ICMP) is skipped for 10 s; the hash brings its agents back after.
AGENT_UDP_OPTIONS = "max_fails=1 fail_timeout=10s"
#: Never marked down: agents' connections last for hours and nginx would keep a recovered
#: node half-excluded until one of them ends; a refused connection just goes to the next.
AGENT_OPTIONS = "max_fails=0"
_LEFTOVER = re.compile(r"@[A-Z_]+@")
_LOG_PATH = re.compile(r"^/[A-Za-z0-9._/+-]{1,4000}$")


class NginxError(Exception):
    """nginx is missing, lacks the stream module, rejects its configuration or did not start."""


def _check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise NginxError(f"port {port} is not between 1 and 65535")
    return port


def server_lines(backends: Sequence[tuple[str, int]], options: str = "") -> str:
    """One ``server HOST:PORT OPTIONS;`` line per backend, indented for an upstream block."""
    if not backends:
        raise NginxError("an upstream needs at least one server")
    if options and not _OPTIONS.match(options):
        raise NginxError(f"{options!r} are not nginx server options (name=value ...)")
    lines = []
    for host, port in backends:
        if not _HOST.match(host):
            raise NginxError(f"{host!r} is not a host name or address")
        suffix = f" {options}" if options else ""
        lines.append(f"        server {host}:{_check_port(port)}{suffix};")
    return "\n".join(lines)


def render_stream(
    template: str,
    enrollment: Sequence[tuple[str, int]],
    agents: Sequence[tuple[str, int]],
    enrollment_listen: str,
    agents_listen: str,
    enrollment_options: str = ENROLLMENT_OPTIONS,
    agent_options: str = AGENT_OPTIONS,
    access_log: Path | None = None,
    agents_udp_listen: str | None = None,
    agents_udp: Sequence[tuple[str, int]] | None = None,
    agent_udp_options: str = AGENT_UDP_OPTIONS,
) -> str:
    """The template's ``stream {}`` block with its ``@NAME@`` placeholders filled.

    ``enrollment`` and ``agents`` are the (host, port) backends of 1515 and 1514; the listen
    values are what nginx's ``listen`` takes (``1514``, ``127.0.0.1:41514``); the options
    follow each ``server`` line of the upstream. ``access_log`` (an absolute path) logs each
    connection with the node it went to; None turns the access log off. With
    ``agents_udp_listen`` the UDP section balances UDP agents over ``agents_udp`` (by
    default the ``agents`` nodes, same ports); without it the section is left out.
    """
    if len(template) > MAX_TEMPLATE:
        raise NginxError(f"the template is larger than {MAX_TEMPLATE} characters")
    body = "\n".join(line for line in template.splitlines() if not line.startswith("#"))
    body = _udp_section(body, keep=agents_udp_listen is not None)
    wanted = PLACEHOLDERS + (UDP_PLACEHOLDERS if agents_udp_listen is not None else ())
    for placeholder in wanted:
        if body.count(placeholder) != 1:
            raise NginxError(f"the template must hold {placeholder} exactly once")
    listens = [enrollment_listen, agents_listen]
    if agents_udp_listen is not None:
        listens.append(agents_udp_listen)
    for listen in listens:
        if not _LISTEN.match(listen) or not 0 < int(listen.rsplit(":", 1)[-1]) < 65536:
            raise NginxError(f"{listen!r} is not a listen address (PORT or HOST:PORT)")
    if access_log is not None and not _LOG_PATH.match(str(access_log)):
        raise NginxError(f"{str(access_log)!r} is not an absolute path nginx can take as is")
    values = {
        "@ENROLLMENT_SERVERS@": server_lines(enrollment, enrollment_options),
        "@AGENT_SERVERS@": server_lines(agents, agent_options),
        "@ENROLLMENT_LISTEN@": enrollment_listen,
        "@AGENTS_LISTEN@": agents_listen,
        "@ACCESS_LOG@": "off" if access_log is None else f"{access_log} {LOG_FORMAT}",
    }
    if agents_udp_listen is not None:
        udp_backends = agents if agents_udp is None else agents_udp
        values["@AGENT_UDP_SERVERS@"] = server_lines(udp_backends, agent_udp_options)
        values["@AGENTS_UDP_LISTEN@"] = agents_udp_listen
    for placeholder, value in values.items():
        body = body.replace(placeholder, value)
    leftover = _LEFTOVER.search(body)
    if leftover:
        raise NginxError(f"the template holds an unknown placeholder {leftover.group()}")
    return body.strip() + "\n"


def _udp_section(body: str, keep: bool) -> str:
    """``body`` with its UDP section's marker lines dropped, and the section too unless
    ``keep``; NginxError for markers out of order (a template without them has no UDP)."""
    lines = body.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() in (UDP_BEGIN, UDP_END)]
    if not marks:
        if keep:
            raise NginxError("the template has no UDP section (# -- UDP agents -- ... )")
        return body
    if len(marks) != 2 or lines[marks[0]].strip() != UDP_BEGIN:
        raise NginxError("the template's UDP section needs one begin and one end marker")
    first, last = marks
    inside = lines[first + 1 : last] if keep else []
    return "\n".join(lines[:first] + inside + lines[last + 1 :])


def read_template(path: Path = TEMPLATE) -> str:
    """The template's text (bounded); NginxError if it cannot be read."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TEMPLATE + 1)
    except OSError as error:
        raise NginxError(f"cannot read the nginx template {path}: {error.strerror}") from error
    if len(data) > MAX_TEMPLATE:
        raise NginxError(f"{path}: larger than {MAX_TEMPLATE} bytes")
    return data.decode("utf-8", "replace")


def find_nginx() -> str | None:
    """The nginx binary on PATH or in /usr/sbin (not always on a user's PATH), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def parse_build_flags(version_output: str) -> list[str]:
    """The ``configure arguments`` that ``nginx -V`` prints, split like a shell would."""
    for line in version_output.splitlines():
        if line.startswith("configure arguments:"):
            try:
                return shlex.split(line.partition(":")[2])
            except ValueError:
                return line.partition(":")[2].split()
    return []


def stream_module_from_flags(
    flags: Sequence[str], dirs: Sequence[Path] = MODULE_DIRS
) -> Path | None:
    """The stream module to ``load_module``, or None when it is built in.

    NginxError when nginx was built without it, or built with it as a dynamic module that
    is not installed (Debian: ``libnginx-mod-stream``).
    """
    if "--with-stream" in flags:
        return None
    if "--with-stream=dynamic" not in flags:
        raise NginxError("this nginx was built without the stream module")
    named = [f.partition("=")[2] for f in flags if f.startswith("--modules-path=")]
    for directory in [Path(d) for d in named] + list(dirs):
        module = directory / STREAM_MODULE
        if module.is_file():
            return module
    raise NginxError(
        f"nginx's stream module ({STREAM_MODULE}) is not installed; "
        "on Debian: apt-get install libnginx-mod-stream"
    )


def stream_module(binary: str) -> Path | None:
    """Ask ``binary -V`` how it was built and return what :func:`stream_module_from_flags` says."""
    try:
        result = subprocess.run(
            [binary, "-V"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NginxError(f"cannot run {binary} -V: {error}") from error
    return stream_module_from_flags(parse_build_flags(result.stdout + result.stderr))


def main_config(prefix: Path, stream: str, module: Path | None) -> str:
    """A whole nginx.conf: one worker, pid file and error log under ``prefix``, ``stream``."""
    load = f"load_module {module};\n" if module is not None else ""
    return (
        f"{load}"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events {\n    worker_connections 4096;\n}\n"
        f"{stream}"
    )


@define
class NginxProcess:
    """One nginx in the foreground, everything it writes under ``prefix``."""

    binary: str
    prefix: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        """PREFIX/nginx.conf."""
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        """PREFIX/error.log: nginx's own log (start, upstream failures)."""
        return self.prefix / "error.log"

    @property
    def access_log(self) -> Path:
        """PREFIX/access.log: where :func:`render_stream` is asked to log connections."""
        return self.prefix / "access.log"

    def _command(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.config_file),
            "-e",
            str(self.error_log),
            "-g",
            "daemon off;",
            *extra,
        ]

    def write(self, stream: str, module: Path | None) -> None:
        """Write PREFIX/nginx.conf around ``stream`` and check it with ``nginx -t``."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(main_config(self.prefix, stream, module), encoding="utf-8")
        try:
            result = subprocess.run(
                self._command("-t"), capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise NginxError(f"cannot run {self.binary} -t: {error}") from error
        if result.returncode != 0:
            raise NginxError(f"nginx rejects {self.config_file}: {result.stderr.strip()}")

    def start(self) -> None:
        """Start nginx (``daemon off``, its own session so a terminal's Ctrl-C stays ours)."""
        out = (self.prefix / "nginx.out").open("ab")
        try:
            self.process = subprocess.Popen(
                self._command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            out.close()

    def started(self) -> bool:
        """True once nginx listens: its master has started its worker process."""
        if not self.running():
            return False
        try:
            return "start worker process" in self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def running(self) -> bool:
        """True while the nginx master process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop nginx (SIGTERM: fast shutdown), killing it if it does not exit in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self.process = None

    def log_text(self) -> str:
        """nginx's error log so far."""
        try:
            return self.error_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def parse_backend(text: str, default_port: int) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT``) as a backend; NginxError when malformed."""
    host, port = text, default_port
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0:
            raise NginxError(f"{text!r}: unclosed [")
        host, rest = text[: closing + 1], text[closing + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise NginxError(f"{text!r} is not HOST or HOST:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        if not number.isdigit():
            raise NginxError(f"{text!r} is not HOST or HOST:PORT")
        port = int(number)
    if not _HOST.match(host):
        raise NginxError(f"{host!r} is not a host name or address")
    return host, _check_port(port)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wazuhcluster.scripts.nginx``: print the template's stream block for nodes."""
    parser = argparse.ArgumentParser(
        prog="python -m wazuhcluster.scripts.nginx",
        description="Render etc/nginx/wazuhcluster-lb.conf for your nodes.",
    )
    parser.add_argument(
        "--enrollment", nargs="+", required=True, metavar="HOST[:PORT]",
        help="every node (master and workers); port 1515 unless given",
    )  # fmt: skip
    parser.add_argument(
        "--agents", nargs="+", required=True, metavar="HOST[:PORT]",
        help="the nodes that take agents (usually the workers); port 1514 unless given",
    )  # fmt: skip
    parser.add_argument("--listen-enrollment", default="1515", help="default %(default)s")
    parser.add_argument("--listen-agents", default="1514", help="default %(default)s")
    parser.add_argument(
        "--listen-agents-udp", default=None, metavar="LISTEN",
        help="also balance UDP agents, listening here (e.g. 1514); none by default",
    )  # fmt: skip
    parser.add_argument("--access-log", type=Path, default=None, help="absolute path, or none")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the template to fill")
    args = parser.parse_args(argv)
    try:
        print(
            render_stream(
                read_template(args.template),
                [parse_backend(node, 1515) for node in args.enrollment],
                [parse_backend(node, 1514) for node in args.agents],
                args.listen_enrollment,
                args.listen_agents,
                access_log=args.access_log,
                agents_udp_listen=args.listen_agents_udp,
            ),
            end="",
        )
    except NginxError as error:
        print(f"wazuhcluster.scripts.nginx: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
