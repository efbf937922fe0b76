"""The catalog schema: one strict pydantic model per YAML mapping, from ``Catalog`` down.

This module holds the whole catalog and the fleet's settings; a course's models are in ``course.py`` and the
settings a course may override in ``overrides.py``. Every model forbids unknown keys (``grammar.Strict``), because
a typo in a catalog (``expected_student:``) must be an error and not a silently ignored setting. Field
descriptions are the reference documentation: ``docs/catalog.md`` is generated from them (``hubfleet docs``), so
they say what an option does and what can go wrong.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from hubfleet.catalog import naming
from hubfleet.catalog.course import Course
from hubfleet.catalog.grammar import (
    HIBERNATE_DOC, Domain, Duration, HibernateAfter, ImageRef, Strict, Username, new_list,
)
from hubfleet.catalog.overrides import Culling, Extensions, Resources, Storage
from hubfleet.catalog.quantities import Memory

Topology = Literal["per-presentation", "per-course", "per-unit", "central"]


class Prewarm(Strict):
    """How far ahead of a session capacity is warmed (2i2c's sizing rule with these inputs)."""

    node_ready_time: Duration = Field(
        300, description="Time a new node takes to be ready for pods (cloud: 3-15 minutes). Warming starts this "
        "long (plus `wake_time`) before a session.",
    )
    wake_time: Duration = Field(60, description="Time to wake a hibernated hub; added to the lead time.")
    arrival_window: Duration = Field(
        600, description="Students arrive spread over this long after a session starts; placeholders are removed "
        "after it.",
    )
    spawn_time: Duration = Field(60, description="Time one server takes to start, for the spawn limit.")
    users_per_node: int = Field(
        0, ge=0, description="Kubernetes: students per node. Set it to get whole-node placeholders (one pod per "
        "node, so nobody queues behind a node that is not ready); 0 uses one small placeholder per user.",
    )


class Lifecycle(Strict):
    """Day counts that turn a presentation's dates into phases."""

    provision_days_before_start: int = Field(14, ge=0, description="The hub is up for staff this many days early.")
    read_only_days_after_end: int = Field(30, ge=0, description="Days after the end during which students can download.")
    retention_days: int = Field(365, ge=0, description="Days archives are kept before they are purged.")


# JupyterLab asks every student on first start "Would you like to get notified about official Jupyter news?";
# a fleet answers it once for everyone. ref: https://jupyterlab.readthedocs.io/en/stable/privacy_policies.html
NO_NEWS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}


class Defaults(Strict):
    image: ImageRef = Field("quay.io/jupyter/scipy-notebook:2026-11-24", description="Image for courses that name none.")
    extensions: Extensions = Field(
        default_factory=lambda: Extensions(settings=NO_NEWS),
        description="JupyterLab configuration every course starts from: a course's or presentation's `extensions` "
        "adds to it (disabled lists are joined; settings are merged per plugin, the course's values winning). "
        "The default turns off JupyterLab's news prompt (`fetchNews: \"false\"`) fleet-wide.",
    )
    resources: Resources = Field(default_factory=lambda: Resources(cpu="1", memory="2G"))
    storage: Storage = Field(default_factory=lambda: Storage(layout="personal-subfolder", size="5Gi"))
    container_user: Literal["username", "jovyan"] = Field("username")
    culling: Culling = Field(default_factory=Culling)
    hibernate_after: HibernateAfter = Field(1800, description=HIBERNATE_DOC)


class OidcAuth(Strict):
    type: Literal["oidc"]
    issuer: str = Field(
        description="The identity provider's issuer URL. Its endpoints are read from "
        "`{issuer}/.well-known/openid-configuration` (on Kubernetes: when each hub starts; a hub whose document is "
        "missing or names another issuer does not start)."
    )
    client_id: str = Field("hubfleet", description="OAuth client id registered with the provider.")
    groups_claim: str = Field("groups", description="Claim in the ID token/userinfo that lists the user's groups.")
    username_claim: str = Field("preferred_username", description="Claim used as the username.")


class LdapAuth(Strict):
    type: Literal["ldap"]
    server: str = Field(description="LDAP URL, e.g. `ldaps://ldap.example.ac.uk`.")
    base_dn: str = Field(description="Search base for users and groups.")
    user_attribute: str = Field("uid", description="Attribute holding the username.")
    bind_dn_template: str | None = Field(None, description="e.g. `uid={username},ou=people,dc=example,dc=ac,dc=uk`.")


class Lti13Auth(Strict):
    type: Literal["lti13"]
    issuer: str = Field(description="The LMS platform's issuer.")
    client_id: str = Field(description="The tool's client id in the LMS.")
    authorize_url: str = Field(description="The LMS's OIDC authorisation endpoint.")
    jwks_url: str = Field(description="The LMS's key set.")


class EmbeddedAuth(Strict):
    type: Literal["embedded"]
    users_file: str | None = Field(None, description="Optional CSV of username,password for the embedded provider.")


Auth = Annotated[Union[OidcAuth, LdapAuth, Lti13Auth, EmbeddedAuth], Field(discriminator="type")]


class Branding(Strict):
    """One branding source for the portal and every hub's templates."""

    name: str = Field("hubfleet", description="Shown in page titles and headers.")
    logo: str | None = Field(None, description="Path of an SVG or PNG logo, relative to fleet.yaml.")
    primary_color: str = Field("#0b4f8a", pattern=r"^#[0-9a-fA-F]{6}$", description="Header colour, `#rrggbb`.")
    login_message: str | None = Field(None, description="Shown above every login form.")


class UnitAdmin(Strict):
    """A member of a unit's staff who reviews its hub requests and sees its hubs on the dashboard, until a date."""

    username: Username = Field(description="Their username at sign-in.")
    until: dt.date = Field(
        description="Last day of the privilege (YYYY-MM-DD); from the day after, they are nobody special. Staff "
        "privileges always end: renew the date each year rather than leave a leaver with approval rights."
    )


class Unit(Strict):
    id: str = Field(description="DNS-1123 id of the faculty/school; names the hub in the per-unit topology.")
    name: str = Field(description="Human name.")
    admins: list[UnitAdmin] = Field(
        default_factory=new_list, description="Unit admins: approve and see this unit's hub requests and hubs."
    )


class Requests(Strict):
    """Hub requests made in the portal: where an approved request's course file is committed."""

    commit_to: Literal["branch", "main"] = Field(
        "branch",
        description="`branch`: each approval is a commit on a branch `hub-request/<id>` of the catalog repository, "
        "for the platform team to merge (the fleet runs nothing until then); `main`: straight onto `main_branch`, so "
        "the next reconcile provisions it.",
    )
    main_branch: str = Field("main", description="The catalog repository's branch the fleet runs from.")


class Directory(Strict):
    """The institutional LDAP directory that `ldap:` enrolment sources read."""

    url: str = Field(description="LDAP URL, e.g. `ldaps://ldap.example.ac.uk`.")
    base_dn: str = Field(description="Search base, e.g. `dc=example,dc=ac,dc=uk`.")
    bind_dn: str | None = Field(None, description="DN to bind as; unset binds anonymously.")
    password_env: str | None = Field(
        None, description="Environment variable holding the bind password (never put passwords in the catalog)."
    )


def _node_reachable(host: str) -> str:
    host = host.strip().rstrip(".")
    if host.endswith((".svc", ".cluster.local")) or ".svc." in host:
        raise ValueError(
            f"{host!r} is a cluster DNS name: the kubelet mounts NFS from the node, whose resolver does not know "
            "cluster DNS. Give an IP address or a name the nodes resolve, or set `cluster_ip` instead so hubfleet "
            "runs the NFS server at a fixed ClusterIP"
        )
    return host


def _ip(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (a Service's ClusterIP, e.g. `10.96.0.200`)") from None


class PersonalStore(Strict):
    """Kubernetes: the one NFS export that holds every student's personal store (layout `personal-subfolder`).
    Each hub namespace mounts the same export through its own PV and claim, so a student's home is the same in
    every hub. Set exactly one of `server` and `cluster_ip`. A ReadWriteMany StorageClass is not enough: it gives
    each namespace's claim a volume of its own, and the store must be one volume shared by every hub. Frozen once
    applied: a PV's NFS source cannot change, so moving the store is a migration (docs/kubernetes.md)."""

    server: Annotated[str, AfterValidator(_node_reachable)] | None = Field(
        None,
        description="Your NFS server (a filer, Filestore, EFS...) as an IP address or a host name the *nodes* "
        "resolve. The kubelet mounts NFS from the node, outside cluster DNS, so `*.svc.cluster.local` names are "
        "refused.",
    )
    path: str = Field("/export", description="The export's path on `server`.")
    cluster_ip: Annotated[str, AfterValidator(_ip)] | None = Field(
        None,
        description="Instead of `server`: hubfleet renders an NFS server into the fleet namespace (`_fleet/`), on a "
        "claim of `storage_class` and `size`, behind a Service with this fixed ClusterIP, which the nodes reach "
        "without DNS. Pick a free address in the cluster's service range (kubeadm: `10.96.0.0/12`, k3s: "
        "`10.43.0.0/16`). One server pod holds every home: fine for a pilot; a filer (`server`) for production.",
    )
    storage_class: str | None = Field(
        None, description="With `cluster_ip`: StorageClass of the server's own volume; unset = the cluster default."
    )
    size: Memory = Field("100Gi", description="With `cluster_ip`: size of the server's volume (all homes).")

    @model_validator(mode="after")
    def _one_source(self) -> "PersonalStore":
        if (self.server is None) == (self.cluster_ip is None):
            raise ValueError("set exactly one of `server` (your NFS server) and `cluster_ip` (hubfleet runs one)")
        return self


class KubernetesSettings(Strict):
    """Cluster choices the catalog makes for `backend: kubernetes` (ignored by the local backend)."""

    personal_store: PersonalStore | None = Field(
        None, description="Required when a presentation uses `personal-subfolder` on Kubernetes: where the store is."
    )
    storage_class: str | None = Field(
        None, description="StorageClass of the per-student claims of `per-presentation` storage; unset = the default."
    )


class Fleet(Strict):
    name: str = Field(description="DNS-1123 name of the fleet; names the hub in the central topology.")
    backend: Literal["local", "kubernetes"] = Field("local", description="Where hubs run.")
    topology: Topology = Field("per-presentation", description="How presentations are grouped into hubs.")
    domain: Domain = Field(
        "localhost",
        description=(
            "Hubs are at `{hub}.{domain}`, each student's server at `{user}.{hub}.{domain}` (an origin of its own: a "
            "page a student serves cannot reach the portal, a hub or a classmate), the portal at `portal.{domain}`. "
            "Kubernetes: `https://`, needs wildcard DNS and a wildcard TLS certificate per hub. Local: "
            "`http://...:PORT`; the default `localhost` needs no DNS in a browser (it resolves `*.localhost` itself); "
            "a VM serving other machines sets a wildcard DNS name."
        ),
    )
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    defaults: Defaults = Field(default_factory=Defaults)
    auth: Auth = Field(default_factory=lambda: EmbeddedAuth(type="embedded"), description="How users log in.")
    branding: Branding = Field(default_factory=Branding)
    units: list[Unit] = Field(default_factory=new_list, description="Faculties or schools.")
    prewarm: Prewarm = Field(default_factory=Prewarm, description="Lead times for timetable pre-warming.")
    directory: Directory | None = Field(None, description="LDAP directory for `ldap:` enrolment sources.")
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings,
        description="`backend: kubernetes` only: where the personal store is, storage classes.",
    )
    platform_team: list[Username] = Field(
        default_factory=new_list, description="Usernames with admin on every hub; nobody else is a global admin."
    )
    requests: Requests = Field(default_factory=Requests, description="Hub requests made in the portal.")
    account_prefix: str | None = Field(
        None,
        description="Local backend as root: the prefix of students' Unix accounts (2-8 lower-case letters or digits, "
        "then `-`). Unset means `hf` + 4 hex digits of the fleet's name, so two fleets on one machine never share "
        "an account. Frozen: changing it gives every student a new account that cannot read their old files.",
    )

    @field_validator("account_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return None if value is None else naming.account_prefix("", value)


class Catalog(Strict):
    """A whole catalog: `fleet.yaml` with its `courses` (inline, or one file each under `courses/`)."""

    fleet: Fleet
    courses: list[Course] = Field(default_factory=new_list)
