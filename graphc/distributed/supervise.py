"""Run one rank under a supervisor, so a rank killed by a signal does not take the others with it.

``mpiexec -disable-auto-cleanup -n 2 python -m graphc.distributed.supervise train.py [args]``

MPICH's hydra proxy SIGKILLs every rank of a machine as soon as one of the processes it
started ends *by a signal*, whatever the cleanup flags (docs/distributed.md, Faults): the
survivors cannot report anything. Under this supervisor the process hydra started is the
supervisor, not the rank: it runs ``python ARGS`` as a child (same environment, same
inherited descriptors, among them the launcher's PMI socket), waits for it, and exits
with the child's status as an *exit code* (128 + the signal number for a killed rank,
as a shell does). With ``-disable-auto-cleanup`` the other ranks then keep running, hit
the bounded wait of their next collective and raise ``gc.DistributedError``.

SIGINT and SIGTERM sent to the supervisor are passed on to the rank; SIGUSR1 (hydra's
notice to the survivors that a process failed, which MPICH handles in the rank) is
ignored by the supervisor itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM)


def exit_code(returncode: int) -> int:
    """A child's ``Popen.returncode`` as a shell's exit status (killed by signal s: 128 + s)."""
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m graphc.distributed.supervise SCRIPT [ARGS...]   (under mpiexec -disable-auto-cleanup)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGUSR1, lambda *_: None)  # a handler, not SIG_IGN: the rank must not inherit "ignored"
    child = subprocess.Popen([sys.executable, *argv], close_fds=False)  # keep the launcher's descriptors (PMI)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _frame: child.send_signal(s))
    code = exit_code(child.wait())
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        print(f"graphc.distributed.supervise: the rank (pid {child.pid}) was killed by {name}; exit status {code}",
              file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # not sys.exit: finalizing Python restores SIGUSR1's default action, which would kill us
