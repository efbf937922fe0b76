"""Presentation members from an LDAP directory (OpenLDAP, 389 DS, Active Directory).

Enrolment sync removes people who are no longer listed, so a result that is silently short would
unenrol real students. Every failure therefore raises: the server is unreachable or refuses the
bind (``LdapUnavailable``), the group does not exist (``LdapGroupNotFound``), or a search was cut
short (``LdapQueryError``, e.g. a server size limit). A result set is only returned once every
page and every member lookup has succeeded.

Each call opens its own connection and closes it: syncs are minutes apart, and a connection kept
between them would mostly be one that the server or a firewall has since dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import ldap3
from ldap3.core import exceptions as lex
from ldap3.utils.conv import escape_filter_chars

log = logging.getLogger(__name__)

# objectClasses whose entries are groups; a member DN pointing at one is a nested group.
_GROUP_CLASSES = {"groupofnames", "groupofuniquenames", "posixgroup", "group", "groupofurls"}
_MEMBER_ATTRS = ("member", "uniqueMember", "memberUid")
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_FILTER_CHUNK = 100  # member values per (|(uid=a)(uid=b)...) lookup; keeps filters well under server limits


class LdapError(Exception):
    """Base of every error this module raises."""


class LdapUnavailable(LdapError):
    """The server cannot be reached, or refused the bind."""


class LdapGroupNotFound(LdapError):
    """The group DN does not exist (or names something that is not a group)."""

    def __init__(self, dn: str, message: str):
        self.dn = dn
        super().__init__(message)


class LdapQueryError(LdapError):
    """A search failed or was cut short (bad filter, missing base, size or time limit)."""


class LdapBaseNotFound(LdapQueryError):
    """The search base does not exist."""


class LdapDirectory:
    """Read-only access to the people and groups of one directory."""

    def __init__(
        self,
        url: str,
        base_dn: str,
        bind_dn: str | None = None,
        password: str | None = None,
        timeout: float = 5,
        page_size: int = 500,  # OpenLDAP's default size limit is 500 and AD's MaxPageSize 1000
    ):
        self.url = url
        self.base_dn = base_dn
        self.bind_dn = bind_dn
        self.password = password
        self.timeout = timeout
        self.page_size = page_size

    def __repr__(self) -> str:  # never show the password
        return f"LdapDirectory({self.url!r}, base_dn={self.base_dn!r}, bind_dn={self.bind_dn!r})"

    # -- public API -------------------------------------------------------------------------------

    def members_of_group(self, group_dn: str, attribute: str = "uid") -> set[str]:
        """Usernames (the ``attribute`` of each member) of a groupOfNames/groupOfUniqueNames/posixGroup.

        Nested groups are followed. Member DNs that no longer exist, or users without
        ``attribute``, cannot be enrolled; they are logged as warnings and left out.
        """
        with self._session() as conn:
            group = self._read(conn, group_dn, ["objectClass", *_MEMBER_ATTRS])
            if group is None:
                raise LdapGroupNotFound(
                    group_dn,
                    f"LDAP group {group_dn!r} does not exist on {self.url}; check the group DN of the "
                    "enrolment source (a typo in an ou= or dc= part is the usual cause)",
                )
            if not _is_group(group):
                classes = ", ".join(_values(group, "objectClass")) or "none"
                raise LdapGroupNotFound(
                    group_dn,
                    f"{group_dn!r} on {self.url} is not a group (objectClass: {classes}); "
                    "name a groupOfNames, groupOfUniqueNames or posixGroup, or use an LDAP filter instead",
                )
            return self._expand(conn, group_dn, group, attribute)

    def members_by_filter(self, filter: str, attribute: str = "uid", base: str | None = None) -> set[str]:
        """Usernames of every entry under ``base`` (default: the directory's base DN) matching ``filter``."""
        base = base or self.base_dn
        found: set[str] = set()
        without: list[str] = []
        with self._session() as conn:
            for dn, attrs in self._search(conn, base, filter, ldap3.SUBTREE, [attribute]):
                value = _first(attrs, attribute)
                if value is None:
                    without.append(dn)
                else:
                    found.add(value)
        if without:
            log.warning("%d entries matching %s have no %s and were left out: %s", len(without), filter, attribute, without[:10])
        return found

    # -- group expansion --------------------------------------------------------------------------

    def _expand(self, conn: ldap3.Connection, group_dn: str, group: dict, attribute: str) -> set[str]:
        found: set[str] = set()
        dangling: list[str] = []
        without: list[str] = []
        seen = {_norm_dn(group_dn)}
        uids: list[str] = []
        pending: list[str] = []

        def take(entry: dict) -> None:
            uids.extend(_values(entry, "memberUid"))
            # uniqueMember may carry an "#'0101'B" uid suffix (RFC 4519 nameAndOptionalUID).
            pending.extend(_values(entry, "member"))
            pending.extend(re.sub(r"#'[01]*'B$", "", v) for v in _values(entry, "uniqueMember"))

        take(group)
        want = [attribute, "objectClass", *_MEMBER_ATTRS]
        while pending:
            batch = []
            for dn in pending:
                key = _norm_dn(dn)
                if key not in seen:  # also stops cycles between nested groups
                    seen.add(key)
                    batch.append(dn)
            pending = []
            entries = self._read_many(conn, batch, want)
            for dn in batch:
                entry = entries.get(_norm_dn(dn))
                if entry is None:
                    dangling.append(dn)
                elif _is_group(entry):
                    take(entry)
                elif (value := _first(entry, attribute)) is not None:
                    found.add(value)
                else:
                    without.append(dn)

        if uids:
            found |= self._resolve_uids(conn, uids, attribute)
        if dangling:
            log.warning("%s lists %d members that do not exist and were left out: %s", group_dn, len(dangling), dangling[:10])
        if without:
            log.warning("%d members of %s have no %s and were left out: %s", len(without), group_dn, attribute, without[:10])
        return found

    def _resolve_uids(self, conn: ldap3.Connection, uids: list[str], attribute: str) -> set[str]:
        """posixGroup memberUid values are already uids; look them up only when another attribute is wanted."""
        unique = sorted({u.strip().lower() for u in uids if u.strip()})
        if attribute.lower() == "uid":
            return set(unique)
        found: set[str] = set()
        for chunk in _chunks(unique, _FILTER_CHUNK):
            query = "(|" + "".join(f"(uid={escape_filter_chars(u)})" for u in chunk) + ")"
            for _dn, attrs in self._search(conn, self.base_dn, query, ldap3.SUBTREE, [attribute]):
                if (value := _first(attrs, attribute)) is not None:
                    found.add(value)
        return found

    def _read_many(self, conn: ldap3.Connection, dns: list[str], attributes: list[str]) -> dict[str, dict]:
        """Entries by normalised DN, with one search per ~100 siblings instead of one read per member.

        A 1,500-student group is 15 searches, not 1,500 round trips. DNs the batching cannot match
        exactly (escaped or multi-valued RDNs) are read one by one, so the shortcut never changes
        the answer.
        """
        by_parent: dict[tuple[str, str], list[str]] = {}
        single: list[str] = []
        for dn in dns:
            rdn = _simple_rdn(dn)
            if rdn is None:
                single.append(dn)
            else:
                by_parent.setdefault((rdn[0], rdn[2]), []).append(dn)

        entries: dict[str, dict] = {}
        for (rdn_attr, parent), members in by_parent.items():
            for chunk in _chunks(members, _FILTER_CHUNK):
                values = "".join(f"({rdn_attr}={escape_filter_chars(_simple_rdn(dn)[1])})" for dn in chunk)
                try:
                    for dn, attrs in self._search(conn, parent, f"(|{values})", ldap3.LEVEL, attributes):
                        entries[_norm_dn(dn)] = attrs
                except LdapBaseNotFound:
                    pass  # the parent is gone, so are these members: the read below reports them
                single.extend(dn for dn in chunk if _norm_dn(dn) not in entries)
        for dn in single:
            attrs = self._read(conn, dn, attributes)
            if attrs is not None:
                entries[_norm_dn(dn)] = attrs
        return entries

    # -- LDAP plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[ldap3.Connection]:
        who = f"as {self.bind_dn!r}" if self.bind_dn else "anonymously"
        server = ldap3.Server(self.url, connect_timeout=self.timeout, get_info=ldap3.NONE)
        try:
            # raise_exceptions makes every non-success result (sizeLimitExceeded included) an
            # exception; by default ldap3 returns the entries it got and a result code, which is
            # exactly the silent partial result this module must never hand back.
            conn = ldap3.Connection(
                server,
                user=self.bind_dn,
                password=self.password,
                read_only=True,
                raise_exceptions=True,
                receive_timeout=self.timeout,
                auto_referrals=False,
            )
            conn.open()
            conn.bind()
        except lex.LDAPPasswordIsMandatoryError as exc:
            raise LdapUnavailable(f"LDAP bind to {self.url} {who} needs a password; set the bind password") from exc
        except (lex.LDAPInvalidCredentialsResult, lex.LDAPBindError) as exc:
            raise LdapUnavailable(
                f"LDAP server {self.url} refused to bind {who}: {_why(exc)}; check the bind DN and password"
            ) from exc
        except lex.LDAPException as exc:
            raise LdapUnavailable(
                f"LDAP server {self.url} is unavailable: {_why(exc)}; check that it is running and "
                "reachable from this host (URL, port, firewall)"
            ) from exc
        try:
            yield conn
        except (lex.LDAPCommunicationError, lex.LDAPResponseTimeoutError, lex.LDAPUnavailableResult, lex.LDAPBusyResult) as exc:
            raise LdapUnavailable(f"LDAP server {self.url} stopped answering mid-query: {_why(exc)}; nothing was read") from exc
        finally:
            try:
                conn.unbind()
            except lex.LDAPException:
                pass  # the connection is already gone; nothing to release

    def _read(self, conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict | None:
        """One entry's attributes, or None when it does not exist."""
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
        except (lex.LDAPNoSuchObjectResult, lex.LDAPInvalidDNSyntaxResult, lex.LDAPInvalidDnError):
            return None
        except lex.LDAPOperationResult as exc:
            if isinstance(exc, (lex.LDAPUnavailableResult, lex.LDAPBusyResult)):
                raise
            raise LdapQueryError(f"reading {dn!r} from {self.url} failed: {_why(exc)}") from exc
        for item in conn.response or ():
            if item.get("type") == "searchResEntry":
                return item["attributes"]
        return None

    def _search(
        self, conn: ldap3.Connection, base: str, query: str, scope: str, attributes: list[str]
    ) -> Iterator[tuple[str, dict]]:
        """Every matching entry, page by page, so a group larger than the server's size limit is whole."""
        cookie: bytes | None = None
        referrals = 0
        while True:
            try:
                conn.search(
                    base, query, scope, attributes=attributes, paged_size=self.page_size, paged_cookie=cookie
                )
            except lex.LDAPInvalidFilterError as exc:
                raise LdapQueryError(f"{query!r} is not a valid LDAP filter: {_why(exc)}") from exc
            except (lex.LDAPNoSuchObjectResult, lex.LDAPInvalidDNSyntaxResult, lex.LDAPInvalidDnError) as exc:
                raise LdapBaseNotFound(f"search base {base!r} does not exist on {self.url}") from exc
            except lex.LDAPSizeLimitExceededResult as exc:
                raise LdapQueryError(
                    f"{self.url} stopped the search {query!r} at its size limit; allow paged results past the "
                    "limit for the bind account (OpenLDAP: size.prtotal=unlimited) or narrow the filter"
                ) from exc
            except lex.LDAPOperationResult as exc:
                if isinstance(exc, (lex.LDAPUnavailableResult, lex.LDAPBusyResult)):
                    raise
                raise LdapQueryError(f"search {query!r} under {base!r} on {self.url} failed: {_why(exc)}") from exc
            for item in conn.response or ():
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["attributes"]
                elif item.get("type") == "searchResRef":
                    referrals += 1
            control = (conn.result.get("controls") or {}).get(_PAGED_RESULTS)
            cookie = control["value"]["cookie"] if control else None
            if not cookie:
                break
        if referrals:
            # Following referrals would mean binding to other servers with our credentials.
            raise LdapQueryError(
                f"search {query!r} under {base!r} on {self.url} returned {referrals} referrals to other servers; "
                "point the enrolment source at the server (or global catalog) that holds the entries"
            )


# -- helpers ---------------------------------------------------------------------------------------


def _values(attrs: dict, name: str) -> list[str]:
    value = attrs.get(name)
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in items]


def _first(attrs: dict, name: str) -> str | None:
    """A username from an attribute: lower-cased like every hubfleet username (LDAP uid is case-insensitive)."""
    for value in _values(attrs, name):
        if value.strip():
            return value.strip().lower()
    return None


def _is_group(attrs: dict) -> bool:
    classes = {c.lower() for c in _values(attrs, "objectClass")}
    return bool(classes & _GROUP_CLASSES) or any(_values(attrs, a) for a in _MEMBER_ATTRS)


def _split_dn(dn: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<!\\),", dn)]


def _norm_dn(dn: str) -> str:
    """A comparison key for DNs: case and spacing around ',' and '=' differ between servers and writers."""
    parts = []
    for rdn in _split_dn(dn):
        name, _, value = rdn.partition("=")
        parts.append(f"{name.strip().lower()}={value.strip().lower()}")
    return ",".join(parts)


def _simple_rdn(dn: str) -> tuple[str, str, str] | None:
    """(attribute, value, parent) of a DN whose first RDN can be put in a filter as is, else None."""
    parts = _split_dn(dn)
    if len(parts) < 2:
        return None
    name, eq, value = parts[0].partition("=")
    name, value = name.strip(), value.strip()
    if not eq or not value or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name) or any(c in value for c in '\\+"#'):
        return None
    return name, value, ",".join(parts[1:])


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _why(exc: BaseException) -> str:
    # ldap3's str() of a result exception is a dump of the whole response; the code name and the
    # server's diagnostic text are what a person can act on.
    if isinstance(exc, lex.LDAPOperationResult):
        detail = (getattr(exc, "message", "") or "").strip()
        return f"{exc.description}" + (f" ({detail})" if detail else "")
    text = str(exc).strip()
    return text or type(exc).__name__
