"""The end of an append-only line file (cluster.log, alerts.json) after something went wrong.

Two things can leave a file's end broken. A write that failed half way (a full disk) leaves
half a line. A crash, or a file system that aborted its journal and turned read-only, can
leave the file's size ahead of its data: after the next mount the lost writes read as a run
of zero bytes. A node cuts both off before it appends again, so each line stays whole.
"""

from __future__ import annotations

import os

#: How far back a half line is looked for before giving up on cutting it.
HALF_LINE_REACH = 65536
#: How much of a zero run is read at a time (the run itself can be longer).
_ZERO_CHUNK = 1 << 20


def ends_a_line(descriptor: int) -> bool:
    """Whether the file is empty or ends with a newline."""
    size = os.fstat(descriptor).st_size
    return size == 0 or os.pread(descriptor, 1, size - 1) == b"\n"


def cut_half_line(descriptor: int) -> bool:
    """Cut the file back to just after its last newline (to nothing when it has none);
    False, and nothing cut, when no newline is within HALF_LINE_REACH of its end."""
    size = os.fstat(descriptor).st_size
    start = max(0, size - HALF_LINE_REACH)
    end = os.pread(descriptor, size - start, start).rfind(b"\n")
    if end < 0 and start > 0:
        return False
    os.ftruncate(descriptor, start + end + 1)
    return True


def cut_trailing_zeros(descriptor: int) -> int:
    """Cut the run of zero bytes at the end of the file (writes a file system lost); how
    many bytes were cut. Neither text line nor JSON holds a zero byte, so no data goes."""
    size = end = os.fstat(descriptor).st_size
    while end > 0:
        start = max(0, end - _ZERO_CHUNK)
        kept = len(os.pread(descriptor, end - start, start).rstrip(b"\0"))
        end = start + kept
        if kept:
            break
    if end < size:
        os.ftruncate(descriptor, end)
    return size - end
