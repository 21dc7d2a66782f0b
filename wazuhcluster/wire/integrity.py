"""AMP commands and stream kinds of the integrity sync (the master's files reach the workers).

One cycle, started by the worker every ``sync_integrity`` seconds or when the master announces
a change::

    worker                                      master
    IntegrityCheck(digest, files)        ──►    "in_sync" | "send_table" | "busy"
    stream "integrity-table" (its table) ──►    compare → reply "Files to create: A | ..."
                                         ◄──    stream "integrity-files" (files + deletions)
    applies atomically, replies with what it did
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.commands import NotAuthenticated

#: Stream kind of a worker's file table.
TABLE_KIND = "integrity-table"
#: Stream kind of the files and deletions the master sends.
FILES_KIND = "integrity-files"

IN_SYNC = "in_sync"
SEND_TABLE = "send_table"
BUSY = "busy"


class IntegrityCheck(amp.Command):
    """Worker → master: the digest of the worker's synced files; is a sync needed?"""

    arguments = [(b"digest", amp.Unicode()), (b"files", amp.Integer())]
    response = [(b"verdict", amp.Unicode())]
    fatalErrors = {NotAuthenticated: b"NOT_AUTHENTICATED"}


class IntegrityChanged(amp.Command):
    """Master → worker: the master's files changed; check now instead of at the next cycle."""

    arguments = [(b"digest", amp.Unicode())]
    requiresAnswer = False
