"""The per-hub node configurable-http-proxy (CHP): finding the binary and building its command line.

Each local hub gets its own CHP. hubfleet starts it itself (``ConfigurableHTTPProxy.should_start = False`` in the
hub's config) rather than letting JupyterHub spawn it, because then:

* the proxy keeps serving running notebook servers while the hub restarts (config change, upgrade, crash);
  ref: https://jupyterhub.readthedocs.io/en/stable/howto/separate-proxy.html
* its auth token is a persisted secret instead of a fresh one per hub start;
* hubfleet tracks it with a pid + create-time record (see ``process.py``). JupyterHub's own
  ``jupyterhub-proxy.pid`` holds a bare pid and, on start, SIGTERMs whatever process now has that pid.

Only the node CHP is accepted: the Python port (``configurable-http-proxy`` on PyPI) drops the websocket
subprotocol, which breaks JupyterLab kernels. ref: DESIGN.md "Known traps".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHP_ENV", "ProxyNotFound", "ProxyCommand", "find_chp", "is_node_chp"]

CHP_ENV = "HUBFLEET_CHP"
_BIN = Path("node_modules") / ".bin" / "configurable-http-proxy"
_HOW_TO_INSTALL = (
    "install it with `make demo` or `npm install` in the hubfleet checkout (package.json pins "
    "configurable-http-proxy 5.x), or point HUBFLEET_CHP at a node configurable-http-proxy executable"
)


class ProxyNotFound(RuntimeError):
    """No usable node configurable-http-proxy was found."""


def find_chp(
    *, roots: Sequence[str | os.PathLike[str]] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """Locate the node configurable-http-proxy executable.

    Order: ``node_modules/.bin`` under each of ``roots`` or their parents (default: the hubfleet checkout this
    file lives in, then the current directory); then ``$HUBFLEET_CHP``; then ``PATH``. The Python port is
    skipped on PATH and rejected when named explicitly in ``HUBFLEET_CHP``.
    """
    env = os.environ if env is None else env
    if roots is None:
        roots = [Path(__file__).resolve().parent, Path.cwd()]
    for start in (Path(r).resolve() for r in roots):
        for directory in (start, *start.parents):
            candidate = directory / _BIN
            if _is_executable(candidate) and is_node_chp(candidate):
                return candidate
    explicit = env.get(CHP_ENV)
    if explicit:
        candidate = Path(explicit).expanduser()
        if not _is_executable(candidate):
            raise ProxyNotFound(f"{CHP_ENV}={explicit} is not an executable file; {_HOW_TO_INSTALL}")
        if not is_node_chp(candidate):
            raise ProxyNotFound(
                f"{CHP_ENV}={explicit} is not the node configurable-http-proxy (the Python port breaks "
                f"websocket subprotocols); {_HOW_TO_INSTALL}"
            )
        return candidate.resolve()
    on_path = shutil.which("configurable-http-proxy", path=env.get("PATH"))
    if on_path and is_node_chp(Path(on_path)):
        return Path(on_path).resolve()
    raise ProxyNotFound(f"configurable-http-proxy (node, 5.x) not found; {_HOW_TO_INSTALL}")


def is_node_chp(path: Path) -> bool:
    """True if ``path`` is the node CHP, judged by the script it resolves to (no process is started).

    npm installs ``.bin/configurable-http-proxy`` as a symlink to ``bin/configurable-http-proxy`` with a
    ``#!/usr/bin/env node`` shebang; the Python port's entry point is a Python console script.
    """
    try:
        real = path.resolve()
        with real.open("rb") as fh:
            first_line = fh.readline(200)
    except OSError:
        return False
    return b"node" in first_line and b"python" not in first_line


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@dataclass(frozen=True)
class ProxyCommand:
    """Everything needed to run one hub's CHP; ``argv``/``env`` feed ``process.start_detached``."""

    executable: Path
    ip: str
    port: int
    api_ip: str
    api_port: int
    auth_token: str
    error_target: str | None = None  # the hub's /hub/error page, so CHP can render "server not running" nicely
    log_level: str = "info"
    # Route on "/<host>/<path>": a hub with JupyterHub.subdomain_host adds its students' routes with their host.
    # ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/proxy.html#jupyterhub.proxy.Proxy.host_routing
    host_routing: bool = False

    @property
    def argv(self) -> list[str]:
        argv = [
            str(self.executable),
            "--ip", self.ip,
            "--port", str(self.port),
            "--api-ip", self.api_ip,
            "--api-port", str(self.api_port),
            "--log-level", self.log_level,
        ]  # fmt: skip
        if self.error_target:
            argv += ["--error-target", self.error_target]
        if self.host_routing:
            argv.append("--host-routing")
        return argv

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for CHP: the token goes in ``CONFIGPROXY_AUTH_TOKEN``, never in argv (argv is world-readable
        in /proc). ref: https://github.com/jupyterhub/configurable-http-proxy#using-the-rest-api"""
        env = dict(os.environ if base is None else base)
        env["CONFIGPROXY_AUTH_TOKEN"] = self.auth_token
        return env

    @property
    def public_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_ip}:{self.api_port}"
