"""Frozen identities: every hub name and storage path derives from stable ids through these functions.

Renaming any of the inputs moves student files, which is why the planner refuses such a change
without an explicit migration (see ``hubfleet.plan.diff``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

def dns_label(text: str) -> str:
    """Lower-case a stable id into a DNS-1123 label candidate (it is validated, never silently mangled)."""
    return text.strip().lower()


# Hub names are hosts (``{hub}.{domain}``) and Kubernetes namespaces; these belong to something else.
RESERVED_HUBS = {
    "portal": "the portal's own host",
    "hubfleet": "used by hubfleet itself",
    "hubfleet-system": "hubfleet's own namespace",
    "default": "a Kubernetes system namespace",
    "kube-system": "a Kubernetes system namespace",
    "kube-public": "a Kubernetes system namespace",
    "kube-node-lease": "a Kubernetes system namespace",
}


def is_reserved_hub(name: str) -> bool:
    """Whether a hub name would take the portal's host or a namespace Kubernetes or hubfleet owns."""
    return name in RESERVED_HUBS or name.startswith("kube-") or name.startswith("_")


def reserved_why(name: str) -> str:
    return RESERVED_HUBS.get(name) or ("reserved for Kubernetes (kube-*)" if name.startswith("kube-") else "reserved")


def presentation_key(course: str, presentation: str) -> str:
    """The human key of a presentation, as staff type it: ``TM351-2026J``."""
    return f"{course}-{presentation}"


def group_name(course: str, presentation: str, role: str = "student") -> str:
    """The JupyterHub group of a presentation's members of one role."""
    base = dns_label(presentation_key(course, presentation))
    return base if role == "student" else f"{base}-{role}s"


def hub_name(topology: str, fleet: str, course: str, presentation: str, unit: str | None) -> str:
    """The hub that hosts a presentation under a topology."""
    if topology == "per-presentation":
        return dns_label(presentation_key(course, presentation))
    if topology == "per-course":
        return dns_label(course)
    if topology == "per-unit":
        return dns_label(unit or "")
    return dns_label(fleet)


def course_dir_name(course: str, presentation: str) -> str:
    """The folder a presentation works in, inside the student's personal store."""
    return presentation_key(course, presentation)


# -- usernames: one grammar, one injective mapping to paths and accounts ------------------------------------

USERNAME_MAX = 64
# Letters of any script (after NFC and lower-casing), digits, and the punctuation of institutional and e-mail
# logins. Not '/', whitespace, control characters or anything a shell, a path or YAML treats specially.
_USERNAME = re.compile(r"[^\W_][\w.@+-]*")
USERNAME_RULE = (
    "letters (any script, lower-cased), digits, '.', '_', '-', '@' and '+'; starting with a letter or digit; "
    f"at most {USERNAME_MAX} characters (e-mail logins such as a.smith@example.ac.uk and names such as josé are fine)"
)


def normalise_username(raw: str) -> str:
    """The form JupyterHub stores: NFC (so an IdP's decomposed ``é`` and a roster's composed one agree), trimmed,
    lower-cased (JupyterHub's default ``Authenticator.normalize_username``)."""
    return unicodedata.normalize("NFC", raw.strip()).lower()


def is_username(name: str) -> bool:
    """Whether an already normalised name is in the grammar."""
    return 0 < len(name) <= USERNAME_MAX and _USERNAME.fullmatch(name) is not None


def check_username(raw: str) -> str:
    """Return the normalised username, or raise ValueError saying what the grammar accepts."""
    name = normalise_username(raw)
    if not is_username(name):
        raise ValueError(f"{raw!r} is not a valid username: use {USERNAME_RULE}")
    return name


# Escaped names longer than this are cut and suffixed with '_' + a hash; '_' never appears in an escaped name,
# so a cut name can never equal an uncut one. Keeps every path component far below the 255-byte limit.
_STORAGE_MAX = 128


def storage_name(username: str) -> str:
    """The one name of a user's files and accounts on disk, in subPaths and in archives: injective.

    Keeps ``[a-z0-9]`` and writes every other byte of the UTF-8 form, the ``-`` itself included, as ``-xx`` hex.
    Decoding is unambiguous (a ``-`` always starts a three-character escape), so two usernames never share a
    name: ``alice.smith`` -> ``alice-2esmith`` and ``alice-2esmith`` -> ``alice-2d2esmith``. Frozen: changing it
    moves every student's files (the z2jh 3 -> 4 upgrade did exactly that to kubespawner's homes).
    """
    out = []
    for ch in username:
        if "a" <= ch <= "z" or "0" <= ch <= "9":
            out.append(ch)
        else:
            out.extend(f"-{b:02x}" for b in ch.encode())
    name = "".join(out)
    if len(name) > _STORAGE_MAX:
        name = f"{name[:_STORAGE_MAX - 25]}_{hashlib.sha256(username.encode()).hexdigest()[:24]}"
    return name


def username_of(stored: str) -> str | None:
    """The inverse of :func:`storage_name`: the username whose storage name is ``stored``; None for a cut name or
    a directory storage_name never makes (``lost+found``, one made by hand). The archive Job names students by it."""
    raw, i = bytearray(), 0
    while i < len(stored):
        if stored[i] == "-" and _HEX2.fullmatch(stored[i + 1:i + 3]):
            raw.append(int(stored[i + 1:i + 3], 16))
            i += 3
        else:
            raw += stored[i].encode()
            i += 1
    try:
        name = raw.decode()
    except UnicodeDecodeError:
        return None
    return name if is_username(name) and name == name.lower() and storage_name(name) == stored else None


_HEX2 = re.compile(r"[0-9a-f]{2}")
_PREFIX = re.compile(r"[a-z][a-z0-9]{1,7}-")
_ACCOUNT_MAX = 32  # useradd's limit on Debian


def account_prefix(fleet: str, explicit: str | None = None) -> str:
    """The Unix account prefix of one fleet: ``fleet.account_prefix`` or ``hf`` + 4 hex of the fleet's name + ``-``.

    Per fleet, so two fleets on one machine never share a student's account (and so their files).
    """
    if explicit is not None:
        if not _PREFIX.fullmatch(explicit):
            raise ValueError(f"account prefix {explicit!r}: use 2-8 lower-case letters or digits, then '-'")
        return explicit
    return f"hf{hashlib.sha256(fleet.encode()).hexdigest()[:4]}-"


def unix_account(prefix: str, username: str) -> str:
    """The system account of a user (root mode): ``prefix + storage_name``, valid for useradd.

    Names over 32 characters are cut and end in ``_`` + 8 hex of the username; ``_`` never occurs in a storage
    name, so a cut name never equals an uncut one, and ``validate`` refuses the (2^-32) clash of two cut names.
    """
    name = prefix + storage_name(username)
    if len(name) <= _ACCOUNT_MAX:
        return name
    keep = _ACCOUNT_MAX - len(prefix) - 9
    return f"{prefix}{storage_name(username)[:keep]}_{hashlib.sha256(username.encode()).hexdigest()[:8]}"


def escape_username(username: str) -> str:
    """Deprecated name of :func:`storage_name`, kept while callers move over."""
    return storage_name(username)
