"""The local hubs' spawner: one JupyterLab process per student, in their course folder, with the course material.

Per spawn it:

1. picks the profile (``user_options["profile"]``): only profiles of presentations the user is admitted to are
   offered (no form when there is one), and naming any other profile is a 403;
2. as root (not demo mode), creates the student's system user (``naming.unix_account``, fleet-scoped) on first
   spawn; demo mode runs every server as the hub's own account (and says so on the login page);
3. lays out home, course folder and extra mounts for the presentation's storage layout (``workspace.py``);
4. seeds course material (idempotent; never clobbers a student's edit) or, in the read-only phase, freezes the
   students' course folder instead;
5. writes the presentation's JupyterLab config (``labconfig.py``) and starts ``jupyterhub-singleuser`` with the
   course folder as its cwd, so kernels started without a path run there too; as root inside a sandbox
   (``sandbox.py``: only this hub's course folders, private /tmp) and a control group with the profile's memory
   and CPU limits (``cgroups.py``).
"""

from __future__ import annotations

import asyncio
import html
import os
import signal
import sys
from pathlib import Path

import psutil
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Unicode, default

from hubfleet.backends.local import cgroups, labconfig, sandbox, workspace
from hubfleet.backends.local.membership import HubContext
from hubfleet.catalog import naming
from hubfleet.plan.spec import PresentationSpec, ProfileSpec
from hubfleet.storage.seeding import SeedError, seed

__all__ = ["HubfleetSpawner"]

_CONTEXTS: dict[str, HubContext] = {}


def _context(path: str) -> HubContext:
    if path not in _CONTEXTS:
        _CONTEXTS[path] = HubContext(Path(path))
    return _CONTEXTS[path]


def _apply_user_options(spawner: HubfleetSpawner, user_options: dict) -> None:
    # JupyterHub >= 5.3 drops user_options unless this hook is set. ref: DESIGN.md "Known traps";
    # https://jupyterhub.readthedocs.io/en/stable/reference/api/spawner.html#jupyterhub.spawner.Spawner.apply_user_options
    spawner.profile_name = spawner.choose_profile(user_options.get("profile")).name


def _options_from_form(formdata: dict[str, list[str]]) -> dict:
    """The spawn form's one field, as a string. JupyterHub hands form fields over as lists (``{"profile": ["r"]}``,
    as tornado parses them), so passing them through named profile ``['r']``, which no user may use; and the
    form's ``_xsrf`` would be stored as a user option. ref:
    https://jupyterhub.readthedocs.io/en/stable/reference/api/spawner.html#jupyterhub.spawner.Spawner.options_from_form"""
    values = formdata.get("profile") or []
    if not values:
        return {}
    return {"profile": values[0] if len(values) == 1 else values}  # several: refused by choose_profile


class HubfleetSpawner(LocalProcessSpawner):
    hub_json = Unicode(config=True, help="Path of this hub's hub.json (written by the fleet side).")
    profile_name = Unicode("", help="The profile chosen for the current/last spawn (kept across hub restarts).")

    @default("apply_user_options")
    def _default_apply_user_options(self):  # noqa: ANN202
        return _apply_user_options

    @default("options_from_form")
    def _default_options_from_form(self):  # noqa: ANN202
        return _options_from_form

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return labconfig.singleuser_command(self._interpreter())

    def _interpreter(self) -> str | None:
        """The profile's own environment (environments.py) if it declares one, else the default one."""
        raw = self.context.raw
        try:
            name = self.choose_profile(self.profile_name or None).name
        except web.HTTPError:
            name = None
        return (raw.get("environments") or {}).get(name) or raw.get("singleuser_python")

    @property
    def context(self) -> HubContext:
        return _context(self.hub_json)

    @property
    def isolated(self) -> bool:
        """Students as separate system users: needs root, and is the only mode that is not demo mode."""
        return not self.context.demo_mode

    # -- profiles ----------------------------------------------------------------------------------------------

    def choose_profile(self, wanted: object) -> ProfileSpec:
        allowed = self.context.profiles_for(self.user.name)
        if not allowed:
            raise web.HTTPError(403, f"{self.user.name} is not admitted to any course on this hub")
        if wanted in (None, "", []):
            return next((p for p in allowed if p.default), allowed[0])
        for profile in allowed:
            if profile.name == wanted:
                return profile
        # Same answer for "exists but not yours" and "no such profile": a hub's course list is not a secret, but
        # a 403 is what the user needs to hear either way.
        raise web.HTTPError(403, f"You may not use profile {str(wanted)[:80]!r}: it is not one of your courses here.")

    async def get_options_form(self) -> str:
        profiles = self.context.profiles_for(self.user.name)
        if len(profiles) <= 1:
            return ""  # nothing to choose: spawn straight away
        current = self.profile_name or next((p.name for p in profiles if p.default), profiles[0].name)
        rows = []
        for p in profiles:
            checked = " checked" if p.name == current else ""
            desc = f"<br><small>{html.escape(p.description)}</small>" if p.description else ""
            rows.append(
                f'<div class="form-check"><input class="form-check-input" type="radio" name="profile" '
                f'id="profile-{html.escape(p.name)}" value="{html.escape(p.name)}"{checked}>'
                f'<label class="form-check-label" for="profile-{html.escape(p.name)}">'
                f"{html.escape(p.display_name)}{desc}</label></div>"
            )
        return "<fieldset><legend>Choose a course</legend>" + "".join(rows) + "</fieldset>"

    # -- state across hub restarts -----------------------------------------------------------------------------

    def get_state(self) -> dict:
        state = super().get_state()
        if self.profile_name:
            state["hubfleet_profile"] = self.profile_name
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.profile_name = state.get("hubfleet_profile", self.profile_name)

    # -- start / stop ------------------------------------------------------------------------------------------

    @property
    def account_prefix(self) -> str:
        raw = self.context.raw
        return raw.get("account_prefix") or naming.account_prefix(raw.get("fleet") or "hubfleet")

    def _workspace(self) -> tuple[workspace.Workspace, PresentationSpec]:
        ctx = self.context
        profile = self.choose_profile(self.profile_name or None)
        pres = ctx.presentation(profile.presentation)
        return workspace.workspace_for(ctx.storage_root, ctx.spec.name, self.user.name, pres), pres

    async def start(self):  # noqa: ANN201
        python = labconfig.singleuser_command(self._interpreter())
        if self.isolated and os.geteuid() != 0:
            raise web.HTTPError(500, "hubfleet: isolating students needs root; run as root or in demo mode")
        if self.isolated and not labconfig.world_executable(python[0]):
            raise web.HTTPError(
                500, f"hubfleet: {python[0]} is not executable by student accounts (a parent directory is private?); "
                "install hubfleet in a world-readable environment or set singleuser_python in hub.json",
            )
        bwrap, setpriv = sandbox.find_bwrap(), sandbox.find_setpriv()
        if self.isolated and not (bwrap and setpriv):
            # Fail closed: without the sandbox a server would see the student's whole home and the shared /tmp.
            raise web.HTTPError(500, "hubfleet: students' servers run in a bubblewrap sandbox; install bubblewrap "
                                     "(Debian: apt-get install bubblewrap) and util-linux's setpriv")
        ctx = self.context
        ws, pres = self._workspace()
        owner = None
        if self.isolated:
            owner = await asyncio.to_thread(workspace.ensure_system_user, self.user.name, ws.home, self.account_prefix,
                                            ctx.raw.get("fleet") or "hubfleet")  # fmt: skip
        await asyncio.to_thread(self._prepare, ws, pres, owner)
        lab_dir = await asyncio.to_thread(labconfig.write_lab_config, ctx.state_dir, ctx.spec.name, pres,
                                          ctx.spec.branding, ctx.catalog_root)  # fmt: skip
        self._ws, self._owner, self._lab_dir, self._pres, self._python = ws, owner, lab_dir, pres, python
        self._group = None
        allow_root = not self.isolated and os.geteuid() == 0
        self.args = labconfig.server_args(ws.home, ws.course_rel, allow_root=allow_root)
        self.default_url = f"/lab/tree/{ws.course_rel}"
        if owner is not None:
            self._group = await asyncio.to_thread(self._limits, owner)
            self.cmd = sandbox.command(self._confinement(ws, pres, owner, lab_dir, python), python,
                                       bwrap=bwrap, setpriv=setpriv)  # fmt: skip
        else:
            self.cmd = python
        return await super().start()

    def _confinement(self, ws: workspace.Workspace, pres: PresentationSpec, owner: workspace.Owner, lab_dir: Path,
                     python: list[str]) -> sandbox.Confinement:  # fmt: skip
        ctx = self.context
        read_only = workspace.is_read_only(ws.course_dir)
        course = [(ws.course_dir, ws.course_path, read_only)]
        course += [(m, m, read_only) for m in ws.mounts if ws.course_dir not in m.parents and m != ws.course_dir]
        store = ctx.state_dir / "archive-store"
        hidden = [ctx.state_dir, ctx.storage_root, ctx.hub_dir]
        try:
            location = store.read_text().strip().removeprefix("file://")
            if "://" not in location:
                hidden.append(Path(location))
        except OSError:
            pass
        venv = Path(python[0]).parent.parent  # <venv>/bin/python: the venv (its pyvenv.cfg and site-packages)
        # A profile's environment lives in the (hidden) state dir and stacks on hubfleet's own venv: both read-only.
        return sandbox.Confinement(
            uid=owner.uid, gid=owner.gid, home=ws.home, hub_home=ws.hub_home, course=tuple(course),
            hidden=tuple(hidden), runtime=(venv, Path(sys.prefix), lab_dir), cwd=ws.course_path,
        )  # fmt: skip

    def _limits(self, owner: workspace.Owner) -> cgroups.ServerGroup | None:
        profile = self.choose_profile(self.profile_name or None)
        limits = cgroups.Limits.of(profile.memory, profile.memory_limit, profile.cpu, profile.cpu_limit)
        try:
            group = cgroups.server_group(self.context.spec.name, owner.name, limits)
        except OSError as exc:
            self.log.warning("no memory/CPU limits for %s: %s", self.user.name, exc)
            return None
        if group is None:
            self.log.warning("no memory/CPU limits for %s: %s", self.user.name, cgroups.availability()[1])
        return group

    def _prepare(self, ws: workspace.Workspace, pres: PresentationSpec, owner: workspace.Owner | None) -> None:
        ctx = self.context
        workspace.prepare(ws, ctx.storage_root, owner)
        read_only = ctx.read_only_for(self.user.name, pres.key)
        if not read_only:
            workspace.set_read_only(ws.course_dir, False, owner)  # no-op unless hubfleet froze it earlier
        if not workspace.is_read_only(ws.course_dir):
            # Seed before freezing too: a student whose first visit is after the end still gets the material.
            # A frozen tree is never seeded again (it is the record of their work).
            for step in pres.seed:
                try:
                    report = seed(
                        ctx.catalog_root / step.source, ws.course_dir / step.target, step.overwrite,
                        uid=owner.uid if owner else None, gid=owner.gid if owner else None, base=ws.course_dir,
                    )  # fmt: skip
                    self.log.info("seeded %s for %s: %s", step.source, self.user.name, report.summary())
                except SeedError as exc:
                    # A broken seed source is the course team's to fix; the student can still work meanwhile.
                    self.log.error("seeding %s for %s failed: %s", step.source, self.user.name, exc)
        if read_only:
            workspace.set_read_only(ws.course_dir, True, owner)

    def make_preexec_fn(self, name: str):  # noqa: ANN201
        cwd = str(self._ws.course_path)
        group = self._group
        # No setuid here: bwrap needs root to build the sandbox, and setpriv inside it drops to the student.

        def preexec() -> None:
            if group is not None:
                group.join()  # before any of the server's code runs; its kernels inherit the group
            os.umask(0o022)  # the hub's own umask is 077; a student's files are ordinary files in their 0700 home
            # The server's cwd is where REST-started kernels without a path run. ref: DESIGN.md "Known traps"
            os.chdir(cwd)

        return preexec

    async def _signal(self, sig: int) -> bool:
        """Stop the server gracefully: the polite signals go to the server inside the sandbox (bwrap would just
        die and take everything with it); KILL and the liveness probe go to bwrap, the process the hub knows.

        The liveness probe (signal 0) also says "gone" for a zombie: a server started by a previous run of this hub
        (kept across a hub restart) is no child of ours, and once it exits only init can reap it, which some inits
        do late; ``kill(pid, 0)`` succeeds on a zombie, so a stop would wait out every timeout for a server that
        has already exited."""
        if sig == 0:
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                return False
            except psutil.Error:
                pass  # not ours to inspect: the plain probe decides
        if sig in (signal.SIGINT, signal.SIGTERM) and self._owner_sandboxed():
            try:
                # The server is the one process whose parent is bwrap's init (its kernels are the server's children).
                inner = [p for p in psutil.Process(self.pid).children(recursive=True)
                         if p.name() != "bwrap" and p.parent() is not None and p.parent().name() == "bwrap"]
            except psutil.Error:
                inner = []
            if inner:
                try:
                    inner[0].send_signal(sig)
                    return True
                except psutil.Error:
                    pass
        return await super()._signal(sig)

    def _owner_sandboxed(self) -> bool:
        return self.isolated and bool(self.pid)

    def user_env(self, env: dict) -> dict:
        env["USER"] = self._owner.name if self._owner else self.user.name
        env["HOME"] = str(self._ws.home)
        env["SHELL"] = "/bin/bash"  # the system user's login shell is nologin; terminals still need a shell
        # The server's interpreter's bin first: a kernelspec may name `python` and resolve it on PATH.
        env["PATH"] = os.pathsep.join([str(Path(self._python[0]).parent), env.get("PATH", os.defpath)])
        env.update(labconfig.server_env(self._lab_dir, self._pres, self.context.spec.name))
        return env

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        group = getattr(self, "_group", None)
        if group is not None:
            await asyncio.to_thread(group.remove)
        try:
            ws, _ = self._workspace()
        except (web.HTTPError, KeyError):
            return  # no longer admitted / presentation gone: nothing ephemeral we can still name
        if ws.ephemeral:
            await asyncio.to_thread(workspace.remove, ws)
