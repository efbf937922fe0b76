"""Per-presentation JupyterLab configuration for local single-user servers, and their command line and env.

A course file says which JupyterLab extensions are disabled and which settings are preset
(``extensions: {disabled: [...], settings: {plugin-id: {...}}}``). On Kubernetes that is baked into the image or a
ConfigMap; locally every server runs from the same Python environment, so the configuration is written per
presentation under the hub's state dir and the server is pointed at it with ``JUPYTER_CONFIG_PATH``:

``<state>/lab/<hub>/<KEY>/labconfig/page_config.json``
    ``{"disabledExtensions": {...}}``; JupyterLab reads ``labconfig/page_config.json`` from every Jupyter config
    dir. ref: https://jupyterlab.readthedocs.io/en/stable/user/extensions.html#enabling-and-disabling-extensions
``<state>/lab/<hub>/<KEY>/labconfig/default_setting_overrides.json``
    settings defaults; jupyterlab_server layers these files from ``labconfig`` dirs under the user's own settings
    (``overrides.json`` would need the whole ``app_settings_dir``, shared by every server of the environment).
    ref: jupyterlab_server/settings_utils.py ``_get_overrides`` ("default_setting_overrides.json")

``<state>/lab/<hub>/<KEY>/custom/custom.css`` (+ the logo) and ``jupyter_server_config.json``
    the fleet's branding (``fleet.branding``, the one source the portal and the hub pages use too) in JupyterLab's
    top bar (``backends/lab_branding.py``, shared with the Kubernetes renderer).

The lab tree is the one thing of the state dir a server needs. The state dir is 0700 (no student account can
reach anything in it); in root mode the server's sandbox binds just this presentation's lab dir in, read-only.

Nothing is written in the student's home, so a course change reaches every student at their next server start and
a student cannot un-disable an extension the course team disabled by editing a file (``~/.jupyter`` still works
for their own preferences, which is intended).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from hubfleet.backends.lab_branding import lab_css, server_config
from hubfleet.plan.spec import BrandingSpec, PresentationSpec

__all__ = ["lab_config_dir", "server_args", "server_env", "singleuser_command", "world_executable",
           "write_lab_config"]


def lab_config_dir(state_dir: Path, hub: str, key: str) -> Path:
    return Path(state_dir) / "lab" / hub / key


def write_lab_config(state_dir: Path, hub: str, pres: PresentationSpec, branding: BrandingSpec | None = None,
                     catalog_root: Path | None = None) -> Path:
    """Write (only if changed) the presentation's lab config; return the dir for ``JUPYTER_CONFIG_PATH``.
    ``branding`` (and ``catalog_root``, where its logo path starts) puts the fleet's branding in the top bar."""
    root = lab_config_dir(state_dir, hub, pres.key)
    labconfig = root / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    for d in (root, labconfig):
        d.chmod(0o755)  # read (through the sandbox's bind) by the server, which runs as the student in root mode
    _write_json(labconfig / "page_config.json", {"disabledExtensions": {name: True for name in pres.extensions.disabled}})
    _write_json(labconfig / "default_setting_overrides.json", dict(pres.extensions.settings))
    if branding is not None:
        custom = root / "custom"
        custom.mkdir(exist_ok=True)
        custom.chmod(0o755)
        logo = None
        source = Path(catalog_root) / branding.logo if branding.logo and catalog_root else None
        if source is not None and source.is_file() and source.suffix.lower() in (".svg", ".png"):
            logo = "logo" + source.suffix.lower()
            if not (custom / logo).is_file() or (custom / logo).read_bytes() != source.read_bytes():
                tmp = custom / f".{logo}.{os.getpid()}.tmp"
                shutil.copyfile(source, tmp)
                tmp.chmod(0o644)
                os.replace(tmp, custom / logo)
        _write_text(custom / "custom.css", lab_css(branding, logo))
        _write_json(root / "jupyter_server_config.json", server_config(str(custom)))
    return root


def _write_text(path: Path, text: str) -> None:
    """Write only when the content changes, atomically: a server starting now reads the old or the new file,
    never half of one."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _write_json(path: Path, data: object) -> None:
    _write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def singleuser_command(python: str | None = None) -> list[str]:
    """The single-user server, run by ``python`` (default: the hub's own interpreter, so the same JupyterLab).

    As root the interpreter must be executable by the students' accounts: a venv whose python links into a 0700
    home (pyenv under /root) is not. hub.json's optional ``singleuser_python`` names another one.
    """
    return [python or sys.executable, "-m", "jupyterhub.singleuser"]


def world_executable(path: str | Path) -> bool:
    """Can an arbitrary other account execute ``path``? (o+x on the resolved file and o+x on every parent.)"""
    real = Path(path).resolve()
    try:
        if not real.stat().st_mode & 0o001:
            return False
        return all(d.stat().st_mode & 0o001 for d in real.parents)
    except OSError:
        return False


def server_args(home: Path, course_rel: str, *, allow_root: bool) -> list[str]:
    """The server's root is the home (in root mode: the sandbox's, holding this hub's course folders only); it
    opens in the course folder.

    The server *process* is started with the course folder as cwd (see the spawner's preexec): a kernel started
    over REST without a ``path`` inherits the server's cwd, not ``root_dir``. ref: DESIGN.md "Known traps";
    jupyter_server MappingKernelManager.start_kernel only sets ``cwd`` when a path is given.
    """
    args = [
        f"--ServerApp.root_dir={home}",
        # The file browser's start folder; an API path relative to root_dir. ref:
        # https://jupyter-server.readthedocs.io/en/latest/other/full-config.html (FileContentsManager.preferred_dir)
        f"--FileContentsManager.preferred_dir={course_rel}",
    ]
    if allow_root:
        # Demo mode as root only: jupyter-server refuses uid 0 without it. ref: DESIGN.md "Known traps"
        args.append("--allow-root")
    return args


def server_env(lab_dir: Path, pres: PresentationSpec, hub: str) -> dict[str, str]:
    # The hub's environment's Jupyter dirs come after the course config: they enable the jupyterlab server
    # extension (etc/jupyter) and hold the lab assets (share/jupyter) even when singleuser_python is another
    # interpreter that only borrows the packages. ref: https://docs.jupyter.org/en/latest/use/jupyter-directories.html
    prefix = Path(sys.prefix)
    return {
        "JUPYTER_CONFIG_PATH": os.pathsep.join([str(lab_dir), str(prefix / "etc" / "jupyter")]),
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "COURSE_CODE": pres.course,
        "PRESENTATION": pres.presentation,
        "HUBFLEET_PRESENTATION": pres.key,
        "HUBFLEET_HUB": hub,
    }
