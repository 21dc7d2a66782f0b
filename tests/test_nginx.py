"""Tests for wazuhcluster.scripts.nginx: rendering the load-balancer template, reading nginx -V."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.scripts import nginx

NODES = [("10.0.0.1", 1515), ("10.0.0.2", 1515), ("10.0.0.3", 1515)]
WORKERS = [("10.0.0.2", 1514), ("10.0.0.3", 1514)]


def render(template: str | None = None, **overrides: Any) -> str:
    """Render ``template`` (the shipped one by default) for three nodes."""
    arguments: dict[str, object] = {
        "enrollment": NODES,
        "agents": WORKERS,
        "enrollment_listen": "1515",
        "agents_listen": "1514",
    }
    arguments.update(overrides)
    text = nginx.read_template() if template is None else template
    return nginx.render_stream(text, **arguments)  # type: ignore[arg-type]


def upstream(config: str, name: str) -> list[str]:
    """The lines inside ``upstream NAME { ... }``."""
    lines = config.splitlines()
    start = lines.index(f"    upstream {name} {{")
    end = lines.index("    }", start)
    return [line.strip() for line in lines[start + 1 : end]]


class RenderTests(SynchronousTestCase):
    """render_stream fills the shipped etc/nginx template."""

    def test_every_node_enrolls_workers_take_agents(self) -> None:
        """1515 goes to all three nodes, 1514 to the two workers, both by least connections,
        with the enrollment and agent server options; no placeholder is left."""
        config = render()
        self.assertEqual(
            upstream(config, "wazuh_enrollment"),
            ["least_conn;"] + [f"server {h}:{p} {nginx.ENROLLMENT_OPTIONS};" for h, p in NODES],
        )
        self.assertEqual(
            upstream(config, "wazuh_agents"),
            ["least_conn;"] + [f"server {h}:{p} {nginx.AGENT_OPTIONS};" for h, p in WORKERS],
        )
        self.assertIn("        listen 1515;\n        proxy_pass wazuh_enrollment;", config)
        self.assertIn("        listen 1514;\n        proxy_pass wazuh_agents;", config)
        self.assertNotIn("@", config)
        self.assertTrue(config.startswith("stream {"))
        self.assertIn("    access_log off;", config)

    def test_udp_agents_by_client_address(self) -> None:
        """With a UDP listen value the UDP section balances the agent nodes by the client's
        address (consistent hash), replies flowing back; without it there is no UDP at all."""
        config = render(agents_udp_listen="1514")
        self.assertEqual(
            upstream(config, "wazuh_agents_udp"),
            ["hash $remote_addr consistent;"]
            + [f"server {h}:{p} {nginx.AGENT_UDP_OPTIONS};" for h, p in WORKERS],
        )
        self.assertIn("        listen 1514 udp;\n        proxy_pass wazuh_agents_udp;", config)
        self.assertNotIn("@", config)
        self.assertNotIn("-- UDP agents --", config)
        other = render(agents_udp_listen="127.0.0.1:41514", agents_udp=[("10.0.0.9", 11514)])
        self.assertEqual(upstream(other, "wazuh_agents_udp")[1:], [
            f"server 10.0.0.9:11514 {nginx.AGENT_UDP_OPTIONS};"
        ])  # fmt: skip
        self.assertIn("listen 127.0.0.1:41514 udp;", other)
        plain = render()
        self.assertNotIn("udp", plain)
        self.assertNotIn("-- UDP agents --", plain)

    def test_udp_needs_the_section(self) -> None:
        """A template without the UDP section still renders TCP, but refuses a UDP listen
        value; a bad UDP listen value is refused too."""
        shipped = nginx.read_template()
        begin = shipped.index("    # -- UDP agents --")
        end = shipped.index("# -- end of UDP agents --") + len("# -- end of UDP agents --")
        without = shipped[:begin] + shipped[end:]
        self.assertNotIn("udp", render(without))
        with self.assertRaisesRegex(nginx.NginxError, "no UDP section"):
            render(without, agents_udp_listen="1514")
        with self.assertRaisesRegex(nginx.NginxError, "listen address"):
            render(agents_udp_listen="1514 udp; include /etc/passwd")

    def test_loopback_listen_and_custom_options(self) -> None:
        """HOST:PORT listen values and other server options are written as given."""
        config = render(
            enrollment_listen="127.0.0.1:41515",
            agents_listen="[::1]:41514",
            agent_options="max_fails=2 fail_timeout=3s",
        )
        self.assertIn("listen 127.0.0.1:41515;", config)
        self.assertIn("listen [::1]:41514;", config)
        self.assertIn("server 10.0.0.2:1514 max_fails=2 fail_timeout=3s;", config)

    def test_access_log(self) -> None:
        """An access log path is written with the template's log format."""
        config = render(access_log=Path("/var/log/nginx/wazuhcluster-lb.log"))
        self.assertIn(
            f"    access_log /var/log/nginx/wazuhcluster-lb.log {nginx.LOG_FORMAT};", config
        )
        self.assertIn(f"log_format {nginx.LOG_FORMAT} ", config)

    def test_bad_values_are_refused(self) -> None:
        """Hosts, ports, listen values and options that could inject configuration, and
        empty upstreams, raise NginxError naming the value."""
        cases: list[dict[str, Any]] = [
            {"enrollment": [("10.0.0.1;evil", 1515)]},
            {"agents": [("10.0.0.2", 70000)]},
            {"agents": []},
            {"agents_listen": "1514; include /etc/passwd"},
            {"enrollment_listen": "99999"},
            {"agent_options": "max_fails=0; proxy_pass x"},
            {"access_log": Path("relative.log")},
            {"access_log": Path("/var/log/x.log; include /etc/passwd")},
        ]
        for overrides in cases:
            with self.assertRaises(nginx.NginxError, msg=str(overrides)):
                render(**overrides)

    def test_template_must_hold_each_placeholder_once(self) -> None:
        """A template missing a placeholder, repeating one or holding an unknown one is
        refused; placeholders named in column-0 comments do not count."""
        shipped = nginx.read_template()
        missing = shipped.replace("@AGENTS_LISTEN@", "1514")
        with self.assertRaisesRegex(nginx.NginxError, "@AGENTS_LISTEN@"):
            render(missing)
        with self.assertRaisesRegex(nginx.NginxError, "exactly once"):
            render(shipped + "\n@AGENT_SERVERS@\n")
        with self.assertRaisesRegex(nginx.NginxError, "@OTHER@"):
            render(shipped + "\n    # @OTHER@\n")
        self.assertIn("#   @AGENT_SERVERS@", shipped)

    def test_template_size_is_bounded(self) -> None:
        """A template over MAX_TEMPLATE is refused before any work."""
        with self.assertRaisesRegex(nginx.NginxError, "larger"):
            render("#" * (nginx.MAX_TEMPLATE + 1))

    def test_unreadable_template(self) -> None:
        """A missing template file is one NginxError naming it."""
        path = Path(self.mktemp())
        with self.assertRaisesRegex(nginx.NginxError, str(path)):
            nginx.read_template(path)


class BuildFlagTests(SynchronousTestCase):
    """stream_module_from_flags reads how nginx was built."""

    def test_static_stream_needs_no_module(self) -> None:
        """--with-stream built in: nothing to load."""
        flags = nginx.parse_build_flags(
            "nginx version: nginx/1.24.0\nconfigure arguments: --prefix=/x --with-stream\n"
        )
        self.assertIsNone(nginx.stream_module_from_flags(flags, []))

    def test_dynamic_stream_found_in_modules_path(self) -> None:
        """--with-stream=dynamic: the .so under --modules-path is loaded."""
        modules = Path(self.mktemp())
        modules.mkdir()
        (modules / nginx.STREAM_MODULE).write_bytes(b"")
        flags = nginx.parse_build_flags(
            "configure arguments: --with-cc-opt='-g -O2' "
            f"--modules-path={modules} --with-stream=dynamic\n"
        )
        self.assertEqual(nginx.stream_module_from_flags(flags, []), modules / nginx.STREAM_MODULE)

    def test_dynamic_stream_not_installed(self) -> None:
        """--with-stream=dynamic without the .so anywhere names the Debian package."""
        empty = Path(self.mktemp())
        empty.mkdir()
        with self.assertRaisesRegex(nginx.NginxError, "libnginx-mod-stream"):
            nginx.stream_module_from_flags(["--with-stream=dynamic"], [empty])

    def test_no_stream_at_all(self) -> None:
        """An nginx built without stream is refused with that reason."""
        with self.assertRaisesRegex(nginx.NginxError, "without the stream module"):
            nginx.stream_module_from_flags(nginx.parse_build_flags("nginx version: x\n"), [])


class MainConfigTests(SynchronousTestCase):
    """main_config keeps everything under the prefix."""

    def test_paths_under_prefix_and_module_first(self) -> None:
        """load_module comes first (nginx requires it), pid and error log are under the
        prefix, and the stream block follows the events block."""
        prefix = Path("/tmp/p")
        text = nginx.main_config(prefix, "stream {\n}\n", Path("/m/ngx_stream_module.so"))
        lines = text.splitlines()
        self.assertEqual(lines[0], "load_module /m/ngx_stream_module.so;")
        self.assertIn("pid /tmp/p/nginx.pid;", lines)
        self.assertIn("error_log /tmp/p/error.log info;", lines)
        self.assertLess(text.index("events {"), text.index("stream {"))
        self.assertNotIn("load_module", nginx.main_config(prefix, "stream {\n}\n", None))


class CommandLineTests(SynchronousTestCase):
    """python -m wazuhcluster.scripts.nginx renders the template for an operator's nodes."""

    def test_backends(self) -> None:
        """HOST takes the default port; HOST:PORT and [v6]:PORT their own; junk is refused."""
        self.assertEqual(nginx.parse_backend("10.0.0.1", 1515), ("10.0.0.1", 1515))
        self.assertEqual(nginx.parse_backend("w1.example:11514", 1514), ("w1.example", 11514))
        self.assertEqual(nginx.parse_backend("[2001:db8::1]:1516", 1514), ("[2001:db8::1]", 1516))
        self.assertEqual(nginx.parse_backend("[2001:db8::1]", 1514), ("[2001:db8::1]", 1514))
        for bad in ("10.0.0.1:x", "2001:db8::1", "[::1", "[::1]x", "a b", "h:0", "h:99999"):
            with self.assertRaises(nginx.NginxError, msg=bad):
                nginx.parse_backend(bad, 1514)

    def test_main_prints_the_block(self) -> None:
        """main prints the stream block with every node given, and exits 0."""
        out = io.StringIO()
        with redirect_stdout(out):
            status = nginx.main(
                ["--enrollment", "10.0.0.1", "10.0.0.2", "--agents", "10.0.0.2:11514"]
            )
        self.assertEqual(status, 0)
        config = out.getvalue()
        self.assertEqual(
            upstream(config, "wazuh_enrollment")[1:],
            [f"server 10.0.0.{n}:1515 {nginx.ENROLLMENT_OPTIONS};" for n in (1, 2)],
        )
        self.assertIn("server 10.0.0.2:11514 max_fails=0;", config)
        self.assertIn("listen 1514;", config)
        self.assertNotIn("udp", config)
        out = io.StringIO()
        with redirect_stdout(out):
            status = nginx.main(
                ["--enrollment", "10.0.0.1", "--agents", "10.0.0.2", "--listen-agents-udp", "1514"]
            )
        self.assertEqual(status, 0)
        self.assertIn("listen 1514 udp;", out.getvalue())

    def test_main_reports_a_bad_node(self) -> None:
        """A malformed node is one line on stderr and exit status 1."""
        err = io.StringIO()
        with redirect_stderr(err):
            status = nginx.main(["--enrollment", "10.0.0.1;", "--agents", "10.0.0.2"])
        self.assertEqual(status, 1)
        self.assertIn("is not a host name or address", err.getvalue())
