"""A real OpenLDAP server for tests: Debian's ``slapd`` on a free loopback port with throwaway data.

Use it as a pytest fixture (``slapd_server``, imported by a conftest) or directly::

    with SlapdServer(tmp_path) as ldap:
        LdapDirectory(ldap.url, ldap.base_dn, ldap.service_dn, ldap.service_password)

Needs ``apt-get install -y slapd ldap-utils``; tests skip with that hint when ``/usr/sbin/slapd`` is
missing. The Debian package's own server (``/etc/ldap``, port 389) is never touched: everything
lives in the temporary directory and the process is killed at teardown.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

BASE_DN = "dc=example,dc=ac,dc=uk"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root-secret"
# A least-privilege bind account, as a real deployment uses. Unlike the rootdn it is subject to the
# size limit, which is how the tests prove that large groups are read with paged searches.
SERVICE_DN = f"cn=hubfleet,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "service-secret"
SIZE_LIMIT = 5  # entries per plain search; below the number of test users on purpose

# uid -> (cn, uidNumber); student ids look like a university's (two letters, digits).
USERS = {
    "ab1234": "Jane Smith",
    "cd5678": "Tom Jones",
    "ef9012": "Chidi Okafor",
    "gh3456": "Seán O'Brien",
    "ij7890": "Mei Chen",
    "kl2345": "Priya Patel",
    "mn6789": "Lars Berg",
    "op1122": "Ana Souza",
    "tutor1": "Tess Tutor",
    "lead1": "Ivan Instructor",
}
TM351_GROUP = f"cn=tm351-2026j,ou=groups,{BASE_DN}"  # groupOfNames: member DNs
TM351_MEMBERS = {"ab1234", "cd5678", "ef9012", "gh3456", "ij7890", "kl2345"}
TM351_TUTORS_GROUP = f"cn=tm351-2026j-tutors,ou=groups,{BASE_DN}"  # posixGroup: memberUid
TM351_TUTORS = {"tutor1", "lead1"}

# cn=config as LDIF, loaded with `slapadd -n0` like Debian's own postinst does; slapd.conf is
# deprecated, and `slaptest -f` cannot convert it before the database exists.
_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {modules}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file://{schema}/core.ldif

include: file://{schema}/cosine.ldif

include: file://{schema}/nis.ldif

include: file://{schema}/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {base}
olcRootDN: {rootdn}
olcRootPW: {rootpw}
olcDbDirectory: {root}/data
olcDbMaxSize: 67108864
olcDbIndex: objectClass eq
olcDbIndex: uid,memberUid eq
olcSizeLimit: size.soft={limit} size.hard={limit} size.prtotal=unlimited
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read
"""


def _ldif() -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example University",
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {SERVICE_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: hubfleet\nsn: service\n"
        f"userPassword: {SERVICE_PASSWORD}",
    ]
    for number, (uid, cn) in enumerate(USERS.items(), start=10001):
        given, sn = cn.split(" ", 1)
        entries.append(
            f"dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {uid}\ncn:: {_b64(cn)}\nsn:: {_b64(sn)}\ngivenName: {given}\nmail: {uid}@example.ac.uk\n"
            f"employeeType: {'staff' if uid in TM351_TUTORS else 'student'}\n"
            f"uidNumber: {number}\ngidNumber: 10000\nhomeDirectory: /home/{uid}"
        )
    members = "\n".join(f"member: uid={uid},ou=people,{BASE_DN}" for uid in sorted(TM351_MEMBERS))
    entries.append(f"dn: {TM351_GROUP}\nobjectClass: groupOfNames\ncn: tm351-2026j\n{members}")
    tutors = "\n".join(f"memberUid: {uid}" for uid in sorted(TM351_TUTORS))
    entries.append(f"dn: {TM351_TUTORS_GROUP}\nobjectClass: posixGroup\ncn: tm351-2026j-tutors\ngidNumber: 20001\n{tutors}")
    return "\n\n".join(entries) + "\n"


def _b64(text: str) -> str:
    # LDIF needs base64 for non-ASCII values (Seán) and values starting with special characters.
    return base64.b64encode(text.encode()).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlapdServer:
    """A running slapd with the test directory loaded; ``stop()`` (or leaving the ``with``) kills it."""

    base_dn = BASE_DN
    root_dn = ROOT_DN
    root_password = ROOT_PASSWORD
    service_dn = SERVICE_DN
    service_password = SERVICE_PASSWORD

    def __init__(self, tmpdir: Path | str, extra_ldif: str = ""):
        self.root = Path(tmpdir) / "slapd"
        self.extra_ldif = extra_ldif
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @staticmethod
    def available() -> bool:
        return all(os.access(p, os.X_OK) for p in (SLAPD, SLAPADD))

    def start(self) -> SlapdServer:
        if not self.available():
            raise RuntimeError(f"{SLAPD} is missing: apt-get install -y slapd ldap-utils")
        self._configure()
        # A port from the OS can be taken again before slapd binds it; retry rather than flake.
        for _ in range(5):
            self.port = _free_port()
            if self._launch():
                return self
        raise RuntimeError(f"slapd did not start; see {self.root / 'slapd.log'}:\n{self._log_tail()}")

    def _configure(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "data").mkdir(parents=True)
        (self.root / "slapd.d").mkdir()
        config = self.root / "config.ldif"
        config.write_text(
            _CONFIG.format(
                schema=SCHEMA_DIR, modules=MODULE_DIR, root=self.root, limit=SIZE_LIMIT, base=BASE_DN,
                rootdn=ROOT_DN, rootpw=ROOT_PASSWORD,
            )
        )
        self._run(SLAPADD, "-n0", "-F", str(self.root / "slapd.d"), "-l", str(config))
        data = self.root / "data.ldif"
        data.write_text(_ldif() + ("\n" + self.extra_ldif if self.extra_ldif else ""))
        # Loading offline with slapadd is faster than ldapadd and needs no running server.
        self._run(SLAPADD, "-F", str(self.root / "slapd.d"), "-b", BASE_DN, "-l", str(data))

    def _run(self, *argv: str) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")

    def _launch(self) -> bool:
        log = open(self.root / "slapd.log", "wb")
        # -d 0 keeps slapd in the foreground (no fork), so we own the pid and can kill it; with
        # debug level 0 it only prints real errors. Root needs no -u/-g: slapd stays root.
        self.process = subprocess.Popen(
            [SLAPD, "-d", "0", "-F", str(self.root / "slapd.d"), "-h", self.url + "/"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in pytest must not reach slapd before teardown does
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # exited: most likely the port was taken; the caller retries
            if self._answers():
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd on {self.url} did not answer within 30 s:\n{self._log_tail()}")

    def _answers(self) -> bool:
        """True once slapd accepts a connection and serves the suffix (the data is loaded)."""
        import ldap3

        try:
            conn = ldap3.Connection(
                ldap3.Server(self.url, connect_timeout=1, get_info=ldap3.NONE),
                ROOT_DN, ROOT_PASSWORD, auto_bind=True, receive_timeout=2,
            )
        except ldap3.core.exceptions.LDAPException:
            return False
        try:
            return conn.search(BASE_DN, "(objectClass=*)", ldap3.BASE)
        finally:
            conn.unbind()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # slapd closes the mdb environment cleanly on TERM
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            return (self.root / "slapd.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def slapd_server(tmp_path: Path) -> Iterator[SlapdServer]:
    """A fresh slapd per test: tests may stop it, so sharing one would make them order-dependent."""
    if not SlapdServer.available():
        pytest.skip(f"{SLAPD} not found: install Debian's OpenLDAP server with `apt-get install -y slapd ldap-utils`")
    with SlapdServer(tmp_path) as server:
        yield server
