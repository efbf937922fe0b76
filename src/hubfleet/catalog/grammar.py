"""The grammars of catalog values that reach a name, a host, a path, a container runtime or generated config,
and the one rule for every catalog mapping (``Strict``: no unknown keys).

Course teams write course files, so these values are untrusted (issue 16, item 10). Each grammar is the one the
consumer itself enforces (the OCI distribution spec for images, DNS for hosts, npm for JupyterLab extensions,
hubfleet's own username grammar), checked at ``validate`` so a bad value is an error at its line and not a
failed pull, a wrong host or a mangled config at 3 a.m. Every regular expression here is linear (no nested
quantifiers over overlapping classes) and runs on length-capped input.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from hubfleet.catalog import naming

# -- container images: the OCI distribution reference grammar ----------------------------------------------
# ref: https://github.com/distribution/reference/blob/main/reference.go (the grammar in its doc comment)
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
_NAME_MAX = 255  # the spec's limit on the name (domain and path)


def check_image(value: object) -> str:
    """An image reference such as ``quay.io/jupyter/scipy-notebook:2026-11-24`` or ``name@sha256:<hex>``."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an image reference; write e.g. quay.io/jupyter/scipy-notebook:2026-11-24")
    head, _, last = value.split("@", 1)[0].rpartition("/")
    name = f"{head}/{last.split(':', 1)[0]}"
    if len(value) > 512 or len(name) > _NAME_MAX or not _REFERENCE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid image reference: use [registry[:port]/]path[:tag][@sha256:digest] with a "
            "lower-case path, e.g. quay.io/jupyter/scipy-notebook:2026-11-24"
        )
    return value


# -- host names ----------------------------------------------------------------------------------------------
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def check_domain(value: object) -> str:
    """A DNS name (lower-case labels of at most 63 characters, at most 253 in all), e.g. ``hubs.example.ac.uk``."""
    if not isinstance(value, str) or not value or len(value) > 253 or not all(
        _DNS_LABEL.fullmatch(label) for label in value.split(".")
    ):
        raise ValueError(
            f"{value!r} is not a DNS name: use lower-case letters, digits and '-' in dot-separated labels of at most "
            "63 characters, e.g. hubs.example.ac.uk (no scheme, port or path)"
        )
    return value


# -- JupyterLab extensions and plugins: an npm package name, optionally ':plugin' --------------------------
# ref: https://github.com/npm/validate-npm-package-name (new names: lower case, URL-safe, at most 214)
_NPM_PART = r"[a-z0-9~-][a-z0-9._~-]*"
_EXTENSION = re.compile(rf"(?:@{_NPM_PART}/)?{_NPM_PART}(?::[A-Za-z0-9_~-][A-Za-z0-9._~-]*)?", re.ASCII)


def check_extension(value: object) -> str:
    """A JupyterLab extension or plugin id: ``@jupyterlab/notebook-extension`` or ``...-extension:tracker``."""
    if not isinstance(value, str) or len(value) > 300 or not _EXTENSION.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a JupyterLab extension or plugin id: use an npm package name (lower case, "
            "e.g. @jupyterlab/notebook-extension), optionally followed by ':plugin' (e.g. ':tracker')"
        )
    return value


# -- generated JSON config --------------------------------------------------------------------------------


def check_json(value: dict) -> dict:
    """Settings end up in JupyterLab's ``overrides.json``: plain JSON only (YAML would also give dates, ``.inf``)."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if bad := next((k for k in item if not isinstance(k, str)), None):
                raise ValueError(f"key {bad!r} is not text; quote it (JupyterLab settings are JSON)")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a JSON number; use a finite number")
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            raise ValueError(f"{item!r} is not a JSON value (a date?); quote it: JupyterLab settings are JSON")
    return value


# -- usernames: one grammar for rosters, static lists, teams and the platform team --------------------------


def _username(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a username; write it as text (quote it if it is all digits)")
    return naming.check_username(value)


Username = Annotated[str, BeforeValidator(_username)]
ImageRef = Annotated[str, BeforeValidator(check_image)]
Domain = Annotated[str, BeforeValidator(check_domain)]
ExtensionId = Annotated[str, BeforeValidator(check_extension)]


# -- local environments: pip requirement lines and Debian package names -------------------------------------
# A requirement is one PEP 508 line (``six==1.17.0``, ``pandas>=2,<3``); never a pip option (``-r /etc/x``,
# ``--index-url``, ``-e``), which would reach files outside the catalog or another package index.
# ref: https://packaging.python.org/en/latest/specifications/dependency-specifiers/
_DEBIAN = re.compile(r"[a-z0-9][a-z0-9+.-]{1,99}", re.ASCII)  # Debian policy 5.6.1 (Source/Package names)


def check_requirement(value: object) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(value, str) or len(value) > 500 or value.lstrip().startswith("-"):
        raise ValueError(f"{str(value)[:80]!r} is not a requirement; write one package with an optional version, "
                         "e.g. 'six==1.17.0' (pip options such as -r or --index-url are not allowed)")
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        raise ValueError(f"{value!r} is not a requirement ({exc}); write e.g. 'six==1.17.0'") from None
    return value


def check_debian_package(value: object) -> str:
    if not isinstance(value, str) or not _DEBIAN.fullmatch(value):
        raise ValueError(f"{str(value)[:80]!r} is not a Debian package name; write e.g. 'postgresql' (lower case "
                         "letters, digits, '+', '-', '.')")
    return value


Requirement = Annotated[str, BeforeValidator(check_requirement)]
DebianPackage = Annotated[str, BeforeValidator(check_debian_package)]


# -- empty defaults --------------------------------------------------------------------------------------------
# Used as ``Field(default_factory=new_list)`` rather than ``default_factory=list``: pydantic inspects the signature of
# every default factory when it builds a validator, and for a builtin such as ``list`` that goes through inspect's
# text-signature parser, whose first use compiles tokenize's large regular expressions: ~9 ms of every command
# that validates a catalog (benchmarks/cli_startup.py). A plain function is inspected directly. Same schema.


def new_list() -> list:
    return []


def new_dict() -> dict:
    return {}


# -- mappings: every catalog model forbids unknown keys ------------------------------------------------------
# A typo in a catalog (``expected_student:``) must be an error and not a silently ignored setting.


class Strict(BaseModel):
    # defer_build: a model's validator is built on first use, and a Catalog's is built once for the whole tree
    # instead of once per model at import (which every CLI command paid; benchmarks/cli_startup.py).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# -- lengths of time ------------------------------------------------------------------------------------------


def check_duration(value: int | str, *, never: bool = False) -> int | str:
    """Seconds (`1800`), minutes or hours (`30m`, `2h`), or (``never``) the word `never`; kept as seconds."""
    how = "write seconds (`1800`), `30m`, `2h`" + (" or `never`" if never else "")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{value} is not a positive number of seconds; {how}")
        return value
    if isinstance(value, str):
        if never and value == "never":
            return value
        found = re.fullmatch(r"(\d+)\s*(s|m|h)?", value.strip())
        if found and int(found.group(1)) > 0:
            return int(found.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[found.group(2)]
    raise ValueError(f"{value!r} is not a length of time; {how}")


def check_hibernate_after(value: int | str) -> int | str:
    return check_duration(value, never=True)


Duration = Annotated[Union[int, str], AfterValidator(check_duration)]
HibernateAfter = Annotated[Union[int, str], AfterValidator(check_hibernate_after)]
HIBERNATE_DOC = (
    "Idle time after which the hub hibernates: seconds (`1800`), `30m`, `2h`, or `never`. A hub hibernates only with "
    "no running or pending student server and no activity for this long; its processes stop (Kubernetes: hub and "
    "proxy scaled to 0), students' files, the database and secrets stay. The first request wakes it (a few seconds; "
    "a form posted to a sleeping hub is not replayed and must be sent again). On a hub serving several "
    "presentations the longest wins, and `never` wins over any time."
)


# -- path templates and the paths they name: inside the course folder or the home, never above them ----------
PLACEHOLDERS = ("username", "course", "presentation", "course_dir")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def check_template(text: str) -> str:
    """Reject placeholders other than the ones hubfleet fills in."""
    for name in _PLACEHOLDER.findall(text):
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{name}}}; the known placeholders are {known}")
    return text


def _components(path: str) -> list[str]:
    return path.split("/")


def check_seed_target(text: str) -> str:
    """A seed target stays inside the course folder: relative, and no `..` (not even one that comes back)."""
    if text.startswith("/") or text.startswith("{course_dir}") or text.startswith("~"):
        raise ValueError(f"{text!r} is not relative to the course folder; write e.g. `.` or `data/week1`")
    if ".." in _components(text):
        raise ValueError(f"{text!r} contains '..'; seed material stays inside the course folder, so remove it")
    return text


_HOME = "/home/{username}"


def check_mount_path(text: str) -> str:
    """An extra mount lies inside the course folder or the home, written without `.`/`..`/empty components."""
    for base in ("{course_dir}", _HOME):
        if text.startswith(base + "/"):
            rest = _components(text[len(base) + 1:])
            if all(part not in ("", ".", "..") for part in rest):
                return text
            raise ValueError(
                f"{text!r} contains an empty, '.' or '..' component; write the path inside {base} plainly"
            )
    raise ValueError(
        f"{text!r} is outside the course folder and the home; write `{{course_dir}}/...` (e.g. "
        f"`{{course_dir}}/.postgres/data`) or `{_HOME}/...`"
    )
