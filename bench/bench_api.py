"""Benchmark: the REST API's agent listing at 50,000 agents, and its login rate.

A master (its whole service tree and the API on HTTPS, from ``wazuhcluster.testing.
devcluster``'s layout) runs in a child process over a registry filled beforehand with
``--agents`` agents (varied statuses, platforms, versions, nodes and groups). This process
is the client: one keep-alive HTTPS connection, requests one after another, and reports
for each request kind the median and 95th percentile of ``--rounds`` requests:

- ``GET /`` (a few hundred bytes, no registry read): the same-run floor every figure is
  divided by, so the ratio says what the listing costs over the API's own round trip;
- ``GET /agents?limit=500`` (the first page, 500 agents);
- ``GET /agents?q=os.platform=ubuntu;status=active&limit=500`` (a query over every agent);
- ``GET /agents?q=name~agent-4999&select=id,name`` (a text match, few results);
- ``GET /agents?q=id<01000,os.platform~win&limit=500`` (a number, an or, a text match);
- ``GET /agents?q=status=disconnected;lastKeepAlive>5m&limit=500`` (a relative time);
- ``GET /agents/summary/status`` (counts over every agent);
- ``GET /overview/agents`` (what dashboards poll);
- ``GET /agents/stats/distinct?fields=os.platform,version`` (distinct combinations);
- ``GET /agents?limit=500`` and ``GET /overview/agents`` by a user whose only role allows
  ``agent:read`` on ``agent:group:web`` (a quarter of the agents).

Then logins (``POST /security/user/authenticate`` with the production scrypt cost): one
client for ``--login-seconds`` seconds, then four clients at once, in logins per second.
The target of issue 20 is a median of at most 100 ms for the two ``/agents`` pages.

    .venv/bin/python bench/bench_api.py [--agents 50000] [--rounds 30] [--login-seconds 10]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

USER, PASSWORD = "bench", "bench-Passw0rd!"
PLATFORMS = (
    ("ubuntu", "Ubuntu", "22.04"),
    ("centos", "CentOS Linux", "7"),
    ("windows", "Windows", "10"),
)
STATUSES = ("active", "active", "active", "disconnected", "never_connected")
VERSIONS = ("Wazuh v4.14.7", "Wazuh v4.13.1", "Wazuh v4.9.2")
KEY = "ab" * 32


# --- the server (child process) ---------------------------------------------------------
def fill_registry(home: object, agents: int) -> None:
    """``agents`` agents in the master's registry, written with plain SQL before it starts."""
    from wazuhcluster.registry import Registry, RegistryFiles

    files = RegistryFiles(home.client_keys, home.shared, home.root / "var" / "multigroups")  # type: ignore[attr-defined]
    registry = Registry.open(home.var_db / "global.db", files, time.time)  # type: ignore[attr-defined]
    db = registry.connection
    now = time.time()
    rows = []
    times: list[tuple[int, float | None]] = []
    for n in range(1, agents + 1):
        platform, os_name, os_version = PLATFORMS[n % len(PLATFORMS)]
        status = STATUSES[n % len(STATUSES)]
        seen = None if status == "never_connected" else now - (n % 600)
        node = "" if status == "never_connected" else f"worker{n % 10 + 1}"
        version = "" if status == "never_connected" else VERSIONS[n % len(VERSIONS)]
        rows.append(
            (n, f"agent-{n}", KEY, now - n, status, version, platform, os_name, os_version, node)
        )
        times.append((n, seen))
    db.execute("BEGIN")
    db.execute("INSERT OR IGNORE INTO groups (name, created) VALUES ('web', 0)")
    db.executemany(
        "INSERT INTO agents (id, name, ip, key, register_time, connection_status, "
        "version, os_platform, os_name, os_version, node_name) "
        "VALUES (?, ?, 'any', ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.executemany("INSERT INTO agent_times (id, last_keepalive) VALUES (?, ?)", times)
    db.executemany(
        "INSERT INTO memberships (agent_id, group_name, priority) VALUES (?, ?, 0)",
        [(n, "web" if n % 4 == 0 else "default") for n in range(1, agents + 1)],
    )
    db.execute("UPDATE meta SET value = ? WHERE key = 'next_id'", (agents + 1,))
    db.execute("COMMIT")
    registry.keys_dirty = registry.groups_dirty = True
    registry.flush_files()
    registry.close()


def serve(base: Path, agents: int) -> None:
    """Run a master with its API over a filled registry; write the port to base/port."""
    from xml.etree.ElementTree import fromstring

    import attrs
    from twisted.internet import reactor

    from wazuhcluster.api.users import User, hash_password, write_users
    from wazuhcluster.api.wiring import master_api
    from wazuhcluster.config.api_settings import parse_api
    from wazuhcluster.config.cluster import load_config
    from wazuhcluster.config.sections import load_sections
    from wazuhcluster.config.xmlconfig import Section
    from wazuhcluster.master.node import MasterService
    from wazuhcluster.testing.devcluster import LocalCluster

    cluster = LocalCluster(base / "cluster", workers=[])
    cluster.write()
    home = cluster.home("master")
    fill_registry(home, agents)
    config = load_config(home.config_file, home, "master")
    master = MasterService(config, reactor, load_sections(config))  # type: ignore[arg-type]
    api_xml = fromstring("<api><bind_addr>127.0.0.1</bind_addr></api>")
    settings = attrs.evolve(
        parse_api(Section(api_xml, "bench", "api"), home),
        port=0,
        max_request_per_minute=0,
        max_unauthenticated_request_per_minute=0,
    )
    write_users(settings.users_file, {USER: User(USER, hash_password(PASSWORD), 0.0)})
    api = master_api(config, master.node, master.node.manager, reactor, settings)  # type: ignore[arg-type]
    assert api is not None
    api.setServiceParent(master)
    master.startService()

    def listening(port: object) -> None:
        (base / "port").write_text(str(port.getHost().port))  # type: ignore[attr-defined]

    api.listening.addCallback(listening)
    reactor.addSystemEventTrigger("before", "shutdown", master.stopService)
    reactor.run()  # type: ignore[attr-defined]


# --- the client (this process) ----------------------------------------------------------
def connection(port: int) -> http.client.HTTPSConnection:
    """A keep-alive HTTPS connection to the API (its self-signed certificate accepted)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)


def request(
    conn: http.client.HTTPSConnection, method: str, path: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One request on ``conn``; the status and body."""
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def login(conn: http.client.HTTPSConnection) -> str:
    """A token for the bench user."""
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    status, body = request(
        conn, "POST", "/security/user/authenticate", {"authorization": f"Basic {basic}"}
    )
    if status != 200:
        raise SystemExit(f"login failed: {status} {body[:200]!r}")
    token: str = json.loads(body)["data"]["token"]
    return token


def post_json(
    conn: http.client.HTTPSConnection, path: str, token: str, body: object = None
) -> dict[str, object]:
    """POST ``path`` (with a JSON ``body``) as the bench user; the answer's data."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    conn.request("POST", path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status != 200 or answer.get("error"):
        raise SystemExit(f"POST {path}: {response.status} {answer}")
    data: dict[str, object] = answer["data"]
    return data


def first_id(data: dict[str, object]) -> int:
    """The id of the first affected item of an answer's data."""
    items = data["affected_items"]
    assert isinstance(items, list)
    return int(items[0]["id"])


def limited_login(conn: http.client.HTTPSConnection, token: str) -> str:
    """A token of a new user whose only role allows agent:read on agent:group:web."""
    policy = {"actions": ["agent:read"], "resources": ["agent:group:web"], "effect": "allow"}
    made = post_json(conn, "/security/policies", token, {"name": "bench_web", "policy": policy})
    role = first_id(post_json(conn, "/security/roles", token, {"name": "bench_web"}))
    post_json(conn, f"/security/roles/{role}/policies?policy_ids={first_id(made)}", token)
    user = {"username": "webby", "password": PASSWORD}
    created = first_id(post_json(conn, "/security/users", token, user))
    post_json(conn, f"/security/users/{created}/roles?role_ids={role}", token)
    # Tokens issued in the second of a role change are refused: log in after it.
    time.sleep(1.5)
    basic = base64.b64encode(f"webby:{PASSWORD}".encode()).decode()
    status, body = request(
        conn, "POST", "/security/user/authenticate", {"authorization": f"Basic {basic}"}
    )
    if status != 200:
        raise SystemExit(f"login of the limited user failed: {status} {body[:200]!r}")
    limited: str = json.loads(body)["data"]["token"]
    return limited


def timed(
    conn: http.client.HTTPSConnection, path: str, token: str, rounds: int
) -> tuple[list[float], int, int]:
    """``rounds`` timings (ms) of GET ``path``, after one warm-up; the answer's size and total."""
    headers = {"authorization": f"Bearer {token}"}
    status, body = request(conn, "GET", path, headers)
    if status != 200:
        raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
    total = json.loads(body).get("data", {}).get("total_affected_items", 0)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        request(conn, "GET", path, headers)
        times.append((time.perf_counter() - start) * 1000)
    return times, len(body), total


def login_rate(port: int, clients: int, seconds: float) -> float:
    """Logins per second with ``clients`` clients logging in one after another each."""
    counts = [0] * clients
    end = time.monotonic() + seconds

    def run(slot: int) -> None:
        conn = connection(port)
        while time.monotonic() < end:
            login(conn)
            counts[slot] += 1
        conn.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    """Start the server, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--login-seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.agents)
        return
    with tempfile.TemporaryDirectory(prefix="bench-api-") as scratch:
        base = Path(scratch)
        started = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(base), "--agents", str(args.agents)],
            stdout=subprocess.DEVNULL,
        )
        try:
            while not (base / "port").exists():
                if server.poll() is not None:
                    raise SystemExit("the server stopped before listening")
                if time.monotonic() - started > 600:
                    raise SystemExit("the server did not listen within 600 s")
                time.sleep(0.2)
            port = int((base / "port").read_text())
            print(f"server up in {time.monotonic() - started:.1f} s with {args.agents} agents")
            print(f"load average before: {os.getloadavg()}")
            conn = connection(port)
            token = login(conn)
            web = limited_login(conn, token)
            kinds = [
                ("GET / (floor)", "/"),
                ("GET /agents?limit=500", "/agents?limit=500"),
                (
                    "GET /agents?q=os.platform=ubuntu;status=active&limit=500",
                    "/agents?q=os.platform%3Dubuntu%3Bstatus%3Dactive&limit=500",
                ),
                (
                    "GET /agents?q=name~agent-4999&select=id,name",
                    "/agents?q=name~agent-4999&select=id,name",
                ),
                (
                    "GET /agents?q=id<01000,os.platform~win&limit=500",
                    "/agents?q=id%3C01000%2Cos.platform~win&limit=500",
                ),
                (
                    "GET /agents?q=status=disconnected;lastKeepAlive>5m&limit=500",
                    "/agents?q=status%3Ddisconnected%3BlastKeepAlive%3E5m&limit=500",
                ),
                ("GET /agents/summary/status", "/agents/summary/status"),
                ("GET /overview/agents", "/overview/agents"),
                (
                    "GET /agents/stats/distinct?fields=os.platform,version",
                    "/agents/stats/distinct?fields=os.platform,version",
                ),
                ("GET /agents?limit=500 (role: agent:group:web)", "/agents?limit=500"),
                ("GET /overview/agents (role: agent:group:web)", "/overview/agents"),
            ]
            results = []
            for label, path in kinds:
                caller = web if "(role:" in label else token
                times, size, total = timed(conn, path, caller, args.rounds)
                results.append(
                    (label, statistics.median(times), percentile(times, 0.95), size, total)
                )
            floor = results[0][1]
            columns = ("median ms", "p95 ms", "x floor", "bytes", "total")
            print(f"\n{'request':58} " + " ".join(f"{name:>9}" for name in columns))
            for label, median, p95, size, total in results:
                figures = (f"{median:.1f}", f"{p95:.1f}", f"{median / floor:.1f}", size, total)
                print(f"{label:58} " + " ".join(f"{figure:>9}" for figure in figures))
            conn.close()
            one = login_rate(port, 1, args.login_seconds)
            four = login_rate(port, 4, args.login_seconds)
            print(f"\nlogins/s: 1 client {one:.1f}, 4 clients {four:.1f}")
            print(f"load average after: {os.getloadavg()}")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
