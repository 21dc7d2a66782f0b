"""Integrity sync core: pure, blocking functions with no reactor (callers use a thread).

The master/worker glue needs only these names::

    table = scan_tree(home, previous)                # local integrity, incremental
    digest = master_digest(table)                     # master: what an in-sync worker has
    digest = table_digest(table)                      # worker: its own digest
    plan = compare(master_table, worker_table)        # missing / shared / extra
    split = split_plan(plan, budget_bytes)            # split.now this cycle, split.deferred later
    iter_pack(home, split.now), packed_size(split.now)        # master → stream source and size
    Unpacker(home).feed(chunk) ... .finish() -> Received      # worker: a stream consumer
    apply_plan(home, received.plan, received.staged) -> ApplyResult
    cleanup_temp_files(home)                          # worker start-up / before a sync
    encode_table(table), decode_table(data)           # worker table → master
"""

from wazuhcluster.integrity.apply import ApplyResult, apply_plan, cleanup_temp_files
from wazuhcluster.integrity.compare import Plan, SplitPlan, compare, split_plan
from wazuhcluster.integrity.pack import iter_pack, packed_size
from wazuhcluster.integrity.paths import PathRefused, resolve, validate_relpath
from wazuhcluster.integrity.records import PackError, SyncHeader
from wazuhcluster.integrity.scan import (
    FileMeta,
    FileTable,
    ScanStats,
    as_synced,
    master_digest,
    scan_tree,
    table_digest,
)
from wazuhcluster.integrity.staging import Staged
from wazuhcluster.integrity.table import SYNC_ITEMS, TEMP_PREFIX, SyncItem, item_for, item_mode
from wazuhcluster.integrity.table_codec import decode_table, encode_table
from wazuhcluster.integrity.unpack import Received, Unpacker

__all__ = [
    "SYNC_ITEMS",
    "TEMP_PREFIX",
    "ApplyResult",
    "FileMeta",
    "FileTable",
    "PackError",
    "PathRefused",
    "Plan",
    "Received",
    "ScanStats",
    "SplitPlan",
    "Staged",
    "SyncHeader",
    "SyncItem",
    "Unpacker",
    "apply_plan",
    "as_synced",
    "cleanup_temp_files",
    "compare",
    "decode_table",
    "encode_table",
    "item_for",
    "item_mode",
    "iter_pack",
    "master_digest",
    "packed_size",
    "resolve",
    "scan_tree",
    "split_plan",
    "table_digest",
    "validate_relpath",
]
