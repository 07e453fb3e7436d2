"""The line of a log that says why a process stopped.

Both actuators report why a version cannot start: the operator from a pod's
termination message (the container's last log lines), ``kanaria up`` from the
model server's log file. Both pick the same line, so the reason reads the same.
"""

from __future__ import annotations

from pathlib import Path

TAIL_BYTES = 4096
"""How much of a log's end is read (what the kubelet keeps as a termination message)."""


def last_error_line(log_tail: str) -> str:
    """The last line naming an error, else the last line, whitespace collapsed."""
    lines = [" ".join(line.split()) for line in log_tail.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1]


def read_tail(path: Path, size: int = TAIL_BYTES) -> str:
    """The last ``size`` bytes of a file as text ('' if it cannot be read)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""
