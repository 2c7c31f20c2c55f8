"""``python -m peepers_devstack.child PARENT_PID COMMAND...``: run COMMAND, bound to PARENT.

The kernel sends the command SIGTERM when the process that started it dies
(``prctl(PR_SET_PDEATHSIG)``, Linux; kept across ``exec``), so no child of the
orchestrator outlives it, even when the orchestrator is killed with SIGKILL. Asked here,
in a process of its own, rather than in a ``preexec_fn``: that runs between fork and
exec inside the orchestrator's threaded process, where Python warns it may deadlock.

If the parent is already gone (it died before the request took effect), the command is
not started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

# linux/prctl.h
_PR_SET_PDEATHSIG: Final = 1


def bind_to_parent(parent: int) -> None:
    """SIGTERM this process when ``parent`` dies; exit now if it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        msg = f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}"
        raise OSError(errno, msg)
    if os.getppid() != parent:
        sys.exit(0)


def bound(argv: Sequence[str], parent: int | None = None) -> list[str]:
    """``argv`` started through this launcher, bound to ``parent`` (by default, the caller).

    Start it from the thread that stays: the kernel signals the child when the thread that
    started it ends, not only the process.
    """
    owner = os.getpid() if parent is None else parent
    return [sys.executable, "-m", "peepers_devstack.child", str(owner), *argv]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or not args[0].isdigit():
        sys.exit("usage: python -m peepers_devstack.child PARENT_PID COMMAND [ARG...]")
    bind_to_parent(int(args[0]))
    os.execvp(args[1], args[1:])  # noqa: S606 - the orchestrator's own child commands


if __name__ == "__main__":
    main()
