"""The local backend's runtime blocks, proven against real processes: secrets, ports, detached processes,
the node proxy, the hub REST client, and a real JupyterHub 6 with login, spawn and a system user."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import wait_until
from hub_fixture import PASSWORD, RealHub, process_tree, real_hub, world_traversable_dir  # noqa: F401

from hubfleet.backends.local import process
from hubfleet.backends.local.ports import PortBook
from hubfleet.backends.local.proxy import CHP_ENV, ProxyNotFound, find_chp
from hubfleet.backends.local.secrets import SecretFileError, ensure_secret
from hubfleet.hubapi import AsyncHubClient, HubAPIError, fan_out

# -- secrets -----------------------------------------------------------------------------------------------------


def test_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cookie_secret"
    first = ensure_secret(path)
    before = path.read_bytes()
    assert ensure_secret(path) == first
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(first)) == 32
    assert [p.name for p in path.parent.iterdir()] == ["cookie_secret"]  # no temp files left behind


def test_secret_readable_by_others_is_refused_not_regenerated(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ensure_secret(path, nbytes=16)
    before = path.read_bytes()
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        ensure_secret(path)
    assert path.read_bytes() == before


# -- ports -------------------------------------------------------------------------------------------------------


def test_ports_are_stable_across_restarts_and_distinct_across_hubs(tmp_path: Path) -> None:
    book_path = tmp_path / "ports.json"
    a = PortBook(book_path).ports_for("a")
    b = PortBook(book_path).ports_for("b")
    assert PortBook(book_path).ports_for("a") == a  # a new PortBook = hubfleet restarted
    assert len({*a, *b}) == 6
    assert json.loads(book_path.read_text())["hubs"]["a"] == {"hub": a.hub_port, "proxy": a.proxy_port, "proxy_api": a.proxy_api_port}
    assert PortBook(book_path).recorded("b") == b


def test_port_held_by_foreign_process_is_reallocated_but_owner_keeps_it(tmp_path: Path) -> None:
    book = PortBook(tmp_path / "ports.json")
    hub_port, proxy_port, api_port = book.ports_for("a")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", proxy_port))
        squatter.listen()
        # held by us: passing our pid as an owner keeps the port (the hub is simply running)
        assert tuple(book.ports_for("a", owner_pids={os.getpid()})) == (hub_port, proxy_port, api_port)
        moved = book.ports_for("a")  # no owner: a foreign process holds it
    assert moved.moved == ("proxy",)
    assert (moved.hub_port, moved.proxy_api_port) == (hub_port, api_port)
    assert moved.proxy_port != proxy_port
    assert book.ports_for("a").moved == ()


# -- detached processes --------------------------------------------------------------------------------------------


def test_detached_process_is_tracked_stopped_with_its_group_and_stop_is_idempotent(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "sleeper.pid.json"
    log = tmp_path / "logs" / "sleeper.log"
    # a shell with a child in the same group, like a hub with helpers
    record = process.start_detached(["/bin/sh", "-c", "echo started; sleep 300 & wait"], tmp_path, None, log, pidfile)
    assert process.start_detached(["/bin/false"], tmp_path, None, log, pidfile) == record  # already running
    proc = record.process()
    assert proc is not None and os.getsid(proc.pid) == proc.pid  # own session, survives our terminal
    wait_until(lambda: proc.children())
    child = proc.children()[0]
    assert process.read_alive(pidfile) == record
    assert process.stop(pidfile, timeout=10) is True
    psutil.wait_procs([child], timeout=10)  # an orphan once the shell exits: init collects it
    assert not proc.is_running() and not child.is_running()
    assert process.read_alive(pidfile) is None and not pidfile.exists()
    assert process.stop(pidfile) is False
    assert "started" in log.read_text()


def test_stop_also_ends_descendants_in_their_own_session(tmp_path: Path) -> None:
    # Like a hub-managed service or a spawned server: JupyterHub gives them their own session.
    def start(name: str) -> tuple[Path, psutil.Process]:
        pidfile = tmp_path / f"{name}.pid.json"
        record = process.start_detached(["/bin/sh", "-c", "setsid sleep 300 & wait"], tmp_path, None, tmp_path / "x.log", pidfile)
        proc = record.process()
        wait_until(lambda: [c for c in proc.children() if os.getsid(c.pid) == c.pid])
        return pidfile, proc.children()[0]

    pidfile, detached_child = start("kept")
    process.stop(pidfile, descendants=False)  # e.g. a hub restart that keeps servers running
    assert detached_child.is_running()
    detached_child.kill()
    pidfile, detached_child = start("stopped")
    process.stop(pidfile)
    psutil.wait_procs([detached_child], timeout=10)
    assert not detached_child.is_running()


def test_reused_pid_is_never_taken_for_the_recorded_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "hub.pid.json"
    # Record *this* test process's pid with a different create time: exactly what a recycled pid looks like.
    me = psutil.Process()
    pidfile.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time() - 1000}))
    assert process.read_alive(pidfile) is None
    assert process.stop(pidfile) is False  # and it did not signal us
    assert me.is_running()


def test_detached_process_survives_its_parent(tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid.json"
    script = (
        "import sys; from hubfleet.backends.local import process;"
        f"process.start_detached(['sleep', '300'], {str(tmp_path)!r}, None, {str(tmp_path / 'o.log')!r}, {str(pidfile)!r})"
    )
    subprocess.run([sys.executable, "-c", script], check=True)  # the parent exits here
    try:
        record = process.read_alive(pidfile)
        assert record is not None and record.argv == ["sleep", "300"]
    finally:
        process.stop(pidfile)
    assert process.read_alive(pidfile) is None



def test_a_process_another_process_started_exits_on_sigterm_and_is_not_killed(tmp_path: Path, monkeypatch) -> None:
    """A hub the portal woke is the portal's child: when the ``up`` loop hibernates it, it exits on SIGTERM and
    stays a zombie until the portal collects it. ``stop`` takes that for stopped; it used to wait out its
    timeout and send SIGKILL (20 + 5 s of every hibernation of a woken hub)."""
    pidfile = tmp_path / "woken.pid.json"
    script = (  # a parent that starts the process, then never collects its children (the portal between wakes)
        "import sys; from hubfleet.backends.local import process;"
        f"process.start_detached(['sleep', '300'], {str(tmp_path)!r}, None, {str(tmp_path / 'w.log')!r}, {str(pidfile)!r});"
        "print('started', flush=True); sys.stdin.read()"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "started"
        record = process.read_alive(pidfile)
        assert record is not None
        sent: list[int] = []
        signal_group = process._signal_group
        monkeypatch.setattr(process, "_signal_group", lambda proc, sig: (sent.append(sig), signal_group(proc, sig)))
        assert process.stop(pidfile, timeout=5) is True
        assert sent == [signal.SIGTERM]  # it ended on SIGTERM: nothing escalated to SIGKILL
        assert process.read_alive(pidfile) is None
        assert psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE  # still its parent's to collect
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)

# -- proxy ---------------------------------------------------------------------------------------------------------


def test_find_chp_prefers_project_node_modules_and_is_node() -> None:
    chp = find_chp()
    assert chp.parts[-3:] == ("node_modules", ".bin", "configurable-http-proxy")
    out = subprocess.run([str(chp), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip().startswith("5.")


def test_find_chp_rejects_python_port_and_says_how_to_install(tmp_path: Path) -> None:
    fake = tmp_path / "configurable-http-proxy"
    fake.write_text("#!/usr/bin/env python3\nprint('python port')\n")
    fake.chmod(0o755)
    with pytest.raises(ProxyNotFound, match="Python port"):
        find_chp(roots=[tmp_path], env={CHP_ENV: str(fake), "PATH": ""})
    # on PATH the Python port is skipped, and the error names the fix
    with pytest.raises(ProxyNotFound, match="npm install"):
        find_chp(roots=[tmp_path], env={"PATH": str(tmp_path)})


# -- a real hub ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_login_spawn_lab_through_proxy_then_stop(real_hub: RealHub) -> None:  # noqa: F811
    hub = real_hub
    browser = hub.login("alice")
    api = hub.client()
    api.start_server("alice")
    model = api.wait_ready("alice", timeout=120)
    assert model["url"] == "/hubs/test/user/alice/"
    # The browser reaches the server through the hub's own CHP; the OAuth dance sets the server's cookie.
    lab = browser.get(f"{hub.base_path}user/alice/lab", follow_redirects=True)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = browser.get(f"{hub.base_path}user/alice/api/status")
    assert status.status_code == 200 and "started" in status.json()
    server_procs = [p for p in process_tree(hub.records()["hub"]) if "jupyterhub-singleuser" in " ".join(p.cmdline())]
    assert server_procs
    assert server_procs[0].cwd() == str(hub.state_dir / "home" / "alice")
    api.stop_server("alice")
    wait_until(lambda: (api.server_status("alice") or {}).get("stopped"), timeout=60)
    psutil.wait_procs(server_procs, timeout=30)
    assert not any(p.is_running() for p in server_procs)
    assert api.writes == 2


@pytest.mark.slow
def test_client_bulk_users_groups_and_pagination(real_hub: RealHub) -> None:  # noqa: F811
    pages: list[str] = []

    def record(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.endswith("/users"):
            pages.append(str(request.url.params))

    api = real_hub.client()
    api._http.event_hooks["request"].append(record)
    names = [f"s{i:04d}" for i in range(450)]  # more than JupyterHub's page cap of 200
    created = api.create_users(names)
    assert len(created) == 450 and api.writes == 1  # one POST for all of them
    assert api.create_users(names[:3]) == [] and api.writes == 2  # all exist: nothing created, no error
    users = {u["name"] for u in api.users()}
    assert set(names) <= users
    assert pages == ["offset=0&limit=200", "offset=200&limit=200", "offset=400&limit=200"]

    api.create_group("tm351-2026j", names[:2])
    api.add_group_members("tm351-2026j", names[2:5])
    api.remove_group_members("tm351-2026j", names[:1])
    assert sorted(api.group("tm351-2026j")["users"]) == names[1:5]
    with pytest.raises(HubAPIError) as err:
        api.create_group("tm351-2026j")
    assert err.value.status == 409 and "already exists" in err.value.message
    api.delete_group("tm351-2026j")
    assert api.group("tm351-2026j") is None

    reads = real_hub.client()
    reads.info(), reads.users(), reads.groups(), reads.user("s0001"), reads.server_status("s0001")
    assert reads.writes == 0


@pytest.mark.slow
def test_async_client_fans_out_with_bounded_concurrency(real_hub: RealHub) -> None:  # noqa: F811
    async def main() -> list[object]:
        async with AsyncHubClient(real_hub.public_url, real_hub.api_token) as api:
            results = await fan_out(["s0001", "s0002", "nobody"], api.user, limit=2)
            return [*results, api.writes]

    one, two, nobody, writes = asyncio.run(main())
    assert (one["name"], two["name"], nobody, writes) == ("s0001", "s0002", None, 0)


@pytest.mark.slow
def test_hub_and_proxy_stop_cleanly_with_no_leftovers(tmp_path: Path) -> None:
    hub = RealHub.create(tmp_path, name="solo")
    hub.start()
    hub.login("bob")
    records = hub.records()
    tree = process_tree(records["hub"]) + process_tree(records["proxy"])
    assert len(tree) >= 3  # hub, idle-culler service, proxy (node)
    hub.stop()
    psutil.wait_procs(tree, timeout=30)
    assert [p for p in tree if p.is_running()] == []
    assert hub.records() == {"hub": None, "proxy": None}
    hub.stop()  # idempotent


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="needs root and useradd")
def test_local_process_spawner_runs_server_as_fresh_system_user(tmp_path: Path) -> None:
    storage = world_traversable_dir("hubfleet-storage-")
    home = storage / "home" / "hf-rtuser"
    home.parent.mkdir(mode=0o755)
    user = "hf-rtuser"
    subprocess.run(["userdel", "-r", user], capture_output=True)  # a previous aborted run
    subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", user], check=True)
    hub = None
    try:
        hub = RealHub.create(tmp_path, name="sys", system_users=True, spawner_class="localprocess",
                             spawner_cmd=[*_student_python(storage), "-m", "jupyterhub.singleuser"],
                             spawner_extra=_dev_jupyter_paths())
        hub.start()
        browser = hub.login(user)
        api = hub.client()
        api.start_server(user)
        api.wait_ready(user, timeout=120)
        browser.get(f"{hub.base_path}user/{user}/lab", follow_redirects=True).raise_for_status()
        assert browser.get(f"{hub.base_path}user/{user}/api/status").status_code == 200
        servers = [p for p in psutil.process_iter(["username", "cmdline"]) if p.info["username"] == user]
        assert servers and all(p.uids().real == pwd.getpwnam(user).pw_uid for p in servers)
        assert servers[0].cwd() == str(home)
        api.stop_server(user)
        wait_until(lambda: (api.server_status(user) or {}).get("stopped"), timeout=60)
    finally:
        if hub:
            hub.stop()
        for leftover in psutil.process_iter(["username"]):  # by pid, only processes of this test's own user
            if leftover.info["username"] == user:
                leftover.kill()
        subprocess.run(["userdel", "-r", user], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


def _student_python(storage: Path) -> list[str]:
    """An interpreter a system user can execute. The dev venv's interpreter lives under /root (0700, pyenv), so
    build a world-readable venv from Debian's python3 that sees the dev venv's packages through a .pth file."""
    system_python = Path("/usr/bin/python3")
    probe = f"import sys; sys.exit(sys.version_info[:2] != {tuple(sys.version_info[:2])})"
    if not system_python.exists() or subprocess.run([system_python, "-c", probe]).returncode:
        pytest.skip("needs /usr/bin/python3 with the same minor version as the dev venv")
    venv = storage / "venv"
    subprocess.run([system_python, "-m", "venv", "--without-pip", venv], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    dev_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir() and "venv" in p)
    (site / "hubfleet-dev.pth").write_text(dev_site + "\n")
    return [str(venv / "bin" / "python")]


def _dev_jupyter_paths() -> str:
    # The borrowed venv's sys.prefix has no etc/jupyter (where jupyterlab enables its server extension) nor
    # share/jupyter (lab assets), so /lab would 404; point the server at the dev venv's.
    # ref: https://docs.jupyter.org/en/latest/use/jupyter-directories.html#envvar-JUPYTER_PATH
    prefix = Path(sys.prefix)
    env = {"JUPYTER_PATH": str(prefix / "share" / "jupyter"), "JUPYTER_CONFIG_PATH": str(prefix / "etc" / "jupyter")}
    return f"c.Spawner.environment = {env!r}"

