"""Benchmark of the integrity core: hashing, scanning, the no-change check, pack/unpack/apply.

Not part of the tests. Run: ``.venv/bin/python bench/bench_integrity.py [--files N] [--runs R]``.

Figures (median of ``--runs``, CPU = process time of this single process):

- raw hashing throughput of BLAKE2b-256 and MD5 over a 256 MiB buffer (the baseline);
- full scan (every file hashed) and incremental scan (nothing changed, stat only) of N files of
  1-8 KB in 100 group directories under etc/shared;
- the master's cost of one no-change check: comparing the digest a worker sent with the cached
  master digest (and, for reference, recomputing the digest and the full compare of two tables);
- table encode/decode (what a worker sends when its digest differs);
- a cold local sync of the whole tree: pack → unpack → apply, with and without fsync;
- the same cold sync carried by an AMP stream over loopback TCP (plain, both ends in this
  process, so on one core), and a 64 MiB blob stream for raw stream throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from wazuhcluster.integrity.apply import apply_plan
from wazuhcluster.integrity.compare import Plan, compare
from wazuhcluster.integrity.pack import iter_pack, packed_size
from wazuhcluster.integrity.scan import (
    ScanStats,
    as_synced,
    master_digest,
    scan_tree,
    table_digest,
)
from wazuhcluster.integrity.table_codec import decode_table, encode_table
from wazuhcluster.integrity.unpack import Received, Unpacker


def measure(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Median wall and CPU seconds of ``fn`` over ``runs`` runs, and the min wall."""
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return statistics.median(walls), statistics.median(cpus), min(walls)


def make_tree(home: str, files: int, seed: int = 1) -> int:
    """Create ``files`` random files of 1-8 KB in 100 groups; return the total bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        directory = os.path.join(home, "etc/shared", f"group{i % 100:03}")
        os.makedirs(directory, exist_ok=True)
        data = rng.randbytes(rng.randint(1024, 8192))
        with open(os.path.join(directory, f"file{i:05}.conf"), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = args.runs

    buf = os.urandom(256 << 20)
    for name, factory in (
        ("blake2b-256", lambda: hashlib.blake2b(digest_size=32)),
        ("md5", hashlib.md5),
    ):

        def hash_buffer(factory: Callable[[], object] = factory, data: bytes = buf) -> None:
            h = factory()
            h.update(data)  # type: ignore[attr-defined]

        wall, _, _ = measure(hash_buffer, runs)
        print(f"raw {name:12} 256 MiB buffer: {len(buf) / wall / 1e6:8.0f} MB/s")
    del buf, hash_buffer

    root = tempfile.mkdtemp(prefix="bench-integrity-")
    try:
        master = os.path.join(root, "master")
        total = make_tree(master, args.files)
        print(f"tree: {args.files} files, {total / 1e6:.1f} MB, 100 directories")

        first = scan_tree(master)  # warm the page cache
        time.sleep(2.1)  # let the files leave the racy window so the cache can be trusted
        stats = ScanStats()
        first = scan_tree(master, stats=stats)
        wall, cpu, _ = measure(lambda: scan_tree(master), runs)
        print(
            f"full scan (all hashed):       {wall * 1e3:7.1f} ms wall, {cpu * 1e3:7.1f} ms CPU, "
            f"{args.files / wall:,.0f} files/s, {total / wall / 1e6:.0f} MB/s"
        )
        wall, cpu, _ = measure(lambda: scan_tree(master, first), runs)
        check = ScanStats()
        scan_tree(master, first, stats=check)
        print(
            f"incremental scan, no change:  {wall * 1e3:7.1f} ms wall, {cpu * 1e3:7.1f} ms CPU "
            f"(hashed {check.hashed}, reused {check.reused})"
        )

        cached = master_digest(first)
        worker_digest = table_digest(as_synced(first))

        def no_change_check() -> bool:
            return worker_digest == cached

        loops = 10_000
        _, cpu, _ = measure(lambda: [no_change_check() for _ in range(loops)], runs)
        print(
            f"no-change check (digest compare, master): {cpu / loops * 1e6:7.3f} µs CPU per check"
        )
        _, cpu, _ = measure(lambda: master_digest(first), runs)
        print(
            f"  master digest recomputed:   {cpu * 1e3:7.2f} ms CPU (once per local-integrity run)"
        )
        worker_table = as_synced(first)
        _, cpu, _ = measure(lambda: compare(first, worker_table), runs)
        print(f"  full compare, no change:    {cpu * 1e3:7.2f} ms CPU (when digests differ)")
        encoded = encode_table(first)
        _, cpu, _ = measure(lambda: encode_table(first), runs)
        _, cpu2, _ = measure(lambda: decode_table(encoded), runs)
        print(
            f"  table encode / decode:      {cpu * 1e3:7.2f} / {cpu2 * 1e3:.2f} ms CPU, "
            f"{len(encoded) / 1e6:.2f} MB"
        )

        plan = compare(first, {})
        for durable in (False, True):
            worker = os.path.join(root, f"worker-{durable}")
            os.makedirs(worker)
            w0, c0 = time.perf_counter(), time.process_time()
            unpacker = Unpacker(worker)
            for piece in iter_pack(master, plan):
                unpacker.feed(piece)
            received = unpacker.finish()
            w1 = time.perf_counter()
            result = apply_plan(worker, received.plan, received.staged, durable=durable)
            w2, c2 = time.perf_counter(), time.process_time()
            assert len(result.created) == args.files and not result.failed
            print(
                f"cold local sync, fsync={'on ' if durable else 'off'}: "
                f"pack+unpack {(w1 - w0) * 1e3:7.0f} ms, apply {(w2 - w1) * 1e3:7.0f} ms, "
                f"total {(w2 - w0):.2f} s wall, {(c2 - c0):.2f} s CPU"
            )
            assert table_digest(scan_tree(worker)) == cached
        stream_benchmarks(master, os.path.join(root, "worker-stream"), plan, cached)
    finally:
        shutil.rmtree(root)


def stream_benchmarks(master: str, worker: str, plan: Plan, expected_digest: str) -> None:
    """Cold sync and a raw blob through an AMP stream over loopback TCP, real reactor."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
    from twisted.internet.protocol import Factory
    from twisted.internet.task import react
    from twisted.internet.threads import deferToThread
    from twisted.protocols import amp

    from wazuhcluster.wire.stream_consumers import BytesConsumer
    from wazuhcluster.wire.stream_endpoint import StreamEndpoint, StreamResponders
    from wazuhcluster.wire.stream_receiver import StreamKind

    os.makedirs(worker)

    class Peer(StreamResponders, amp.AMP):
        def __init__(self) -> None:
            super().__init__()
            self.streams = StreamEndpoint(
                self.callRemote,
                reactor,
                {
                    "sync": StreamKind(1 << 30, lambda n: Unpacker(worker)),
                    "blob": StreamKind(1 << 30, lambda n: _Discard()),
                },
                self.complete,
                window=8,
            )

        def complete(self, kind: str, stream_id: str, result: object) -> object:
            if isinstance(result, Received):
                d = deferToThread(apply_plan, worker, result.plan, result.staged)
                return d.addCallback(lambda r: r.describe())
            return None

    class _Discard(BytesConsumer):
        def feed(self, data: bytes) -> None:
            pass

    async def run(_reactor: object) -> None:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Peer)
        )
        client: Any = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(Peer)
        )
        w0, c0 = time.perf_counter(), time.process_time()
        result = await client.streams.send("sync", iter_pack(master, plan), size=packed_size(plan))
        w1, c1 = time.perf_counter(), time.process_time()
        print(
            f"cold sync over AMP stream (TCP loopback, window 8): {w1 - w0:.2f} s wall, "
            f"{c1 - c0:.2f} s CPU, {packed_size(plan) / (w1 - w0) / 1e6:.1f} MB/s ({result.reply})"
        )
        assert table_digest(scan_tree(worker)) == expected_digest
        blob = os.urandom(64 << 20)
        w0 = time.perf_counter()
        await client.streams.send("blob", blob)
        w1 = time.perf_counter()
        print(
            f"64 MiB blob over AMP stream (TCP loopback, window 8): "
            f"{len(blob) / (w1 - w0) / 1e6:.0f} MB/s"
        )
        client.transport.loseConnection()
        await port.stopListening()
        done: Deferred[None] = Deferred()
        reactor.callLater(0.1, done.callback, None)
        await done

    try:
        react(run)
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
