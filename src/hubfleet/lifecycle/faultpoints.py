"""Named points in the archive phase where the fault-injection suite (``tests/faults/``) strikes, deterministically.

Production runs never set the variables below, and then ``strike`` is one dictionary lookup. Set, they make a real
run fail at a real step, the way an operator's bad day would: a byte of the student's archive flipped by the disk,
or a ``kill -9`` of the whole run or of only its main process (the pool's workers left behind).

    HUBFLEET_FAULT=<step>:<action>     step: write | verify | ledger | stub | delete
                                       action: corrupt | kill-all | kill-main
    HUBFLEET_FAULT_ONCE=<path>         strike only once per path (created O_EXCL), whatever the process

Steps, in the order a student's files go through them: ``write`` (archive and manifest in place, before the
read-back), ``verify`` (read back sound, before the ledger hears of it), ``ledger`` (recorded verified), ``stub``
(the WHERE-ARE-MY-FILES note written, before the last check and the removal), ``delete`` (removal half-way).

Standard library only: shipped with ``archive.py`` into the Kubernetes archive Job.
"""

from __future__ import annotations

import os
import signal

ENV = "HUBFLEET_FAULT"
ONCE = "HUBFLEET_FAULT_ONCE"
MAIN_PID = "HUBFLEET_FAULT_MAIN_PID"  # set by the run's main process so a pool worker knows whom to kill
STEPS = ("write", "verify", "ledger", "stub", "delete")
ACTIONS = ("corrupt", "kill-all", "kill-main")


def mark_main() -> None:
    """Called by the main process before it starts workers (they inherit the environment)."""
    if os.environ.get(ENV) and not os.environ.get(MAIN_PID):
        os.environ[MAIN_PID] = str(os.getpid())


def strike(step: str, archive: str | os.PathLike[str] | None = None) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, action = spec.partition(":")
    if want != step or action not in ACTIONS:
        return
    once = os.environ.get(ONCE)
    if once:
        try:
            os.close(os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return
    if action == "corrupt":
        if archive is not None and os.path.getsize(archive) > 0:
            with open(archive, "r+b") as fh:  # one flipped bit in the middle, as bit rot would
                fh.seek(os.path.getsize(archive) // 2)
                byte = fh.read(1)
                fh.seek(-1, os.SEEK_CUR)
                fh.write(bytes([byte[0] ^ 0x01]))
        return
    if action == "kill-all":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    main = int(os.environ.get(MAIN_PID) or os.getpid())
    os.kill(main, signal.SIGKILL)
    if main == os.getpid():  # pragma: no cover - SIGKILL does not return
        raise SystemExit(137)
