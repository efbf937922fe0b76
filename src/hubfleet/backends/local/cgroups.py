"""Memory and CPU limits per student server on a local hub, with Linux control groups (root mode).

Each server gets its own group, ``<hub's group>/hubfleet/<hub>/<account>``, created under the group the hub
process itself runs in (so a fleet run inside a container, a systemd unit or a CI job stays inside its own limits),
with the catalog's ``memory_limit`` (or, unset, the ``memory`` guarantee) and ``cpu_limit`` (or ``cpu``). The
server joins it before it runs any code (the spawner's preexec), and so does everything it starts: kernels,
terminals. When a server goes over its memory limit the kernel's OOM killer picks a process *in that group*; other
students' servers are not touched.

cgroup v2 (unified: ``memory.max``, ``cpu.max``) is used where the machine has it with the memory controller
delegated; otherwise v1 (``memory.limit_in_bytes``, ``cpu.cfs_quota_us``). Where neither is writable, servers run
without limits and :func:`availability` says why (``hubfleet status`` prints it).

ref: https://docs.kernel.org/admin-guide/cgroup-v2.html, https://docs.kernel.org/admin-guide/cgroup-v1/memory.html,
https://docs.kernel.org/scheduler/sched-bwc.html
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hubfleet.catalog.quantities import cpu_cores, memory_bytes

__all__ = ["Limits", "ServerGroup", "availability", "server_group"]

ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory: int | None  # bytes
    cpu: float | None  # cores

    @classmethod
    def of(cls, memory: str | None, memory_limit: str | None, cpu: str | None, cpu_limit: str | None) -> Limits:
        mem = memory_limit or memory
        cores = cpu_limit or cpu
        return cls(memory_bytes(mem) if mem else None, cpu_cores(cores) if cores else None)


@dataclass(frozen=True)
class ServerGroup:
    """One server's control group(s): the directories its pid is written into."""

    version: int
    dirs: tuple[Path, ...]

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the calling process) into the group. Async-signal-safe enough for a preexec."""
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as fh:
                fh.write(str(pid or os.getpid()))

    def remove(self) -> None:
        """Remove the (now empty) group; a group that still has processes stays (rmdir refuses)."""
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


def _own_group(controller: str | None) -> str | None:
    """This process's group path for a v1 controller (or the v2 path for None), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or (controller is not None and controller in names.split(",")):
            return path
    return None


def _v2_base(*, enable: bool = True) -> Path | None:
    controllers = ROOT / "cgroup.controllers"
    own = _own_group(None)
    if not controllers.is_file() or own is None or "memory" not in controllers.read_text().split():
        return None
    base = ROOT / own.lstrip("/")
    try:
        enabled = (base / "cgroup.subtree_control").read_text().split()
        if "memory" not in enabled:
            if not enable:
                return base if os.access(base / "cgroup.subtree_control", os.W_OK) else None
            # Needs the hub's own group to have no processes of its own (the "no internal processes" rule), as a
            # systemd unit with Delegate=yes arranges. If it does not, v2 is not usable from here.
            (base / "cgroup.subtree_control").write_text("+memory +cpu")
    except OSError:
        return None
    return base


def _v1_dir(controller: str) -> Path | None:
    top = ROOT / controller
    own = _own_group(controller)
    if own is None or not (top / "cgroup.procs").exists():
        return None
    base = top / own.lstrip("/")
    return base if os.access(base, os.W_OK) else None


def availability() -> tuple[bool, str]:
    """(limits can be enforced, what is used or why not) on this machine, for ``status`` and the docs."""
    if os.geteuid() != 0:
        return False, "no per-server memory/CPU limits: not running as root (demo mode)"
    if _v2_base(enable=False) is not None:
        return True, "cgroup v2 (memory.max, cpu.max)"
    if _v1_dir("memory") is not None:
        cpu = "cpu.cfs_quota_us" if _v1_dir("cpu") is not None else "no CPU limit: v1 cpu controller not writable"
        return True, f"cgroup v1 (memory.limit_in_bytes, {cpu})"
    return False, "no per-server memory/CPU limits: neither cgroup v2 nor a writable v1 memory controller found"


def server_group(hub: str, account: str, limits: Limits) -> ServerGroup | None:
    """Create (or reuse) the server's group with ``limits``; None when this machine cannot enforce limits."""
    name = Path("hubfleet") / hub / account
    v2 = _v2_base()
    if v2 is not None:
        d = v2 / name
        for parent in reversed([d, *d.parents]):
            if v2 in parent.parents and not parent.is_dir():
                parent.mkdir()
                if parent != d:
                    (parent / "cgroup.subtree_control").write_text("+memory +cpu")
        (d / "memory.max").write_text(str(limits.memory) if limits.memory else "max")
        if (d / "memory.swap.max").exists():
            (d / "memory.swap.max").write_text("0")  # swapping is not a way past the limit
        if (d / "cpu.max").exists():
            quota = int(limits.cpu * CFS_PERIOD_US) if limits.cpu else "max"
            (d / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        return ServerGroup(2, (d,))
    dirs = []
    mem = _v1_dir("memory")
    if mem is None:
        return None
    d = mem / name
    d.mkdir(parents=True, exist_ok=True)
    value = str(limits.memory) if limits.memory else "-1"
    memsw = d / "memory.memsw.limit_in_bytes"
    # memsw >= memory at every moment: raise memsw first when growing, lower memory first when shrinking.
    for path in ([memsw, d / "memory.limit_in_bytes"] if _grows(d, limits.memory) else [d / "memory.limit_in_bytes", memsw]):
        if path.exists():
            path.write_text(value)
    dirs.append(d)
    cpu = _v1_dir("cpu")
    if cpu is not None:
        c = cpu / name
        c.mkdir(parents=True, exist_ok=True)
        (c / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (c / "cpu.cfs_quota_us").write_text(str(int(limits.cpu * CFS_PERIOD_US)) if limits.cpu else "-1")
        dirs.append(c)
    return ServerGroup(1, tuple(dirs))


def _grows(d: Path, new: int | None) -> bool:
    try:
        current = int((d / "memory.limit_in_bytes").read_text())
    except (OSError, ValueError):
        return True
    return new is None or new >= current
