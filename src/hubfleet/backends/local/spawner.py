"""The local hubs' spawner: one JupyterLab process per student, in their course folder, with the course material.

Per spawn it:

1. picks the profile (``user_options["profile"]``): only profiles of presentations the user is admitted to are
   offered (no form when there is one), and naming any other profile is a 403;
2. as root (not demo mode), creates the student's system user ``hf-<name>`` on first spawn; demo mode runs every
   server as the hub's own account (and says so on the login page);
3. lays out home, course folder and extra mounts for the presentation's storage layout (``workspace.py``);
4. seeds course material (idempotent; never clobbers a student's edit) or, in the read-only phase, freezes the
   students' course folder instead;
5. writes the presentation's JupyterLab config (``labconfig.py``) and starts ``jupyterhub-singleuser`` with the
   course folder as its cwd, so kernels started without a path run there too.
"""

from __future__ import annotations

import asyncio
import html
import os
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from tornado import web
from traitlets import Unicode, default

from hubfleet.backends.local import labconfig, workspace
from hubfleet.backends.local.membership import HubContext
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


class HubfleetSpawner(LocalProcessSpawner):
    hub_json = Unicode(config=True, help="Path of this hub's hub.json (written by the fleet side).")
    profile_name = Unicode("", help="The profile chosen for the current/last spawn (kept across hub restarts).")

    @default("apply_user_options")
    def _default_apply_user_options(self):  # noqa: ANN202
        return _apply_user_options

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return labconfig.singleuser_command(self.context.raw.get("singleuser_python"))

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

    def _workspace(self) -> tuple[workspace.Workspace, PresentationSpec]:
        ctx = self.context
        profile = self.choose_profile(self.profile_name or None)
        pres = ctx.presentation(profile.presentation)
        return workspace.workspace_for(ctx.storage_root, ctx.spec.name, self.user.name, pres), pres

    async def start(self):  # noqa: ANN201
        if self.isolated and os.geteuid() != 0:
            raise web.HTTPError(500, "hubfleet: isolating students needs root; run as root or in demo mode")
        if self.isolated and not labconfig.world_executable(self.cmd[0]):
            raise web.HTTPError(
                500, f"hubfleet: {self.cmd[0]} is not executable by student accounts (a parent directory is private?); "
                "install hubfleet in a world-readable environment or set singleuser_python in hub.json",
            )
        ctx = self.context
        ws, pres = self._workspace()
        owner = await asyncio.to_thread(workspace.ensure_system_user, self.user.name, ws.home) if self.isolated else None
        await asyncio.to_thread(self._prepare, ws, pres, owner)
        lab_dir = await asyncio.to_thread(labconfig.write_lab_config, ctx.hub_dir, pres)
        # The fleet's state dir is hubfleet's own: traverse-only (o+x) up to it; above it, not ours to change.
        if owner and not await asyncio.to_thread(labconfig.ensure_traversable, lab_dir, ctx.state_dir):
            raise web.HTTPError(500, f"hubfleet: student accounts cannot reach {lab_dir}: a parent of the state dir is private")
        self._ws, self._owner, self._lab_dir, self._pres = ws, owner, lab_dir, pres
        allow_root = not self.isolated and os.geteuid() == 0
        self.args = labconfig.server_args(ws.home, ws.course_rel, allow_root=allow_root)
        self.default_url = f"/lab/tree/{ws.course_rel}"
        return await super().start()

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
        drop = set_user_setuid(self._owner.name, chdir=False) if self._owner else None

        def preexec() -> None:
            if drop is not None:
                drop()
            # The server's cwd is where REST-started kernels without a path run. ref: DESIGN.md "Known traps"
            os.chdir(cwd)

        return preexec

    def user_env(self, env: dict) -> dict:
        env["USER"] = self._owner.name if self._owner else self.user.name
        env["HOME"] = str(self._ws.home)
        env["SHELL"] = "/bin/bash"  # the system user's login shell is nologin; terminals still need a shell
        # The server's interpreter's bin first: a kernelspec may name `python` and resolve it on PATH.
        env["PATH"] = os.pathsep.join([str(Path(self.cmd[0]).parent), env.get("PATH", os.defpath)])
        env.update(labconfig.server_env(self._lab_dir, self._pres, self.context.spec.name))
        return env

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        try:
            ws, _ = self._workspace()
        except (web.HTTPError, KeyError):
            return  # no longer admitted / presentation gone: nothing ephemeral we can still name
        if ws.ephemeral:
            await asyncio.to_thread(workspace.remove, ws)
