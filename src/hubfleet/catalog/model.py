"""The catalog schema: one strict pydantic model per YAML mapping.

Every model forbids unknown keys, because a typo in a catalog (``expected_student:``) must be an
error and not a silently ignored setting. Field descriptions are the reference documentation:
``docs/catalog.md`` is generated from them (``hubfleet docs``), so they say what an option does and
what can go wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from hubfleet.catalog import naming
from hubfleet.catalog.grammar import DebianPackage, Domain, ExtensionId, ImageRef, Requirement, Username, check_json
from hubfleet.catalog.quantities import Cpu, Memory

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PLACEHOLDERS = ("username", "course", "presentation", "course_dir")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Topology = Literal["per-presentation", "per-course", "per-unit", "central"]
Layout = Literal["personal-subfolder", "per-presentation", "ephemeral"]
Overwrite = Literal["never", "always", "if-unchanged"]
Role = Literal["student", "tutor", "instructor"]


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
_HIBERNATE_DOC = (
    "Idle time after which the hub hibernates: seconds (`1800`), `30m`, `2h`, or `never`. A hub hibernates only with "
    "no running or pending student server and no activity for this long; its processes stop (Kubernetes: hub and "
    "proxy scaled to 0), students' files, the database and secrets stay. The first request wakes it (a few seconds; "
    "a form posted to a sleeping hub is not replayed and must be sent again). On a hub serving several "
    "presentations the longest wins, and `never` wins over any time."
)


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


class Strict(BaseModel):
    # defer_build: a model's validator is built on first use, and a Catalog's is built once for the whole tree
    # instead of once per model at import (which every CLI command paid; benchmarks/cli_startup.py).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Resources(Strict):
    """CPU and memory for each student server: a guarantee, and optionally a limit."""

    cpu: Cpu | None = Field(None, description="CPU guaranteed per server, in cores (`1`, `0.5`) or millicores (`500m`).")
    memory: Memory | None = Field(None, description="Memory guaranteed per server, e.g. `2G` or `2Gi`.")
    cpu_limit: Cpu | None = Field(None, description="Hard CPU limit per server; unset means the guarantee.")
    memory_limit: Memory | None = Field(
        None, description="Hard memory limit per server; a server that exceeds it is killed. Unset means the guarantee."
    )


class Culling(Strict):
    """Idle culling, run by jupyterhub-idle-culler inside every hub."""

    enabled: bool = Field(True, description="Stop idle servers. Turning this off costs money on a busy cluster.")
    idle_timeout: int = Field(3600, ge=60, description="Seconds without activity before a server is stopped.")
    max_age: int = Field(
        0, ge=0, description="Seconds after which a server is stopped even if active; 0 means no limit."
    )
    every: int = Field(600, ge=30, description="Seconds between culler passes.")


class ExtraMount(Strict):
    """An extra directory inside the student's server, e.g. a postgres data dir in the course folder."""

    name: str = Field(description="Short DNS-1123 name of the mount; it names the volume on Kubernetes.")
    path: str = Field(
        description="Where it appears, a template using `{username}`, `{course}`, `{presentation}`, `{course_dir}`. "
        "It must lie inside the course folder (`{course_dir}/...`) or the student's home (`/home/{username}/...`), "
        "without `.` or `..` components: a mount elsewhere could cover the server's own configuration "
        "(`/etc/jupyter`), and the home itself or another course's folder belongs to no one course."
    )
    read_only: bool = Field(False, description="Mount it read-only (e.g. a shared dataset).")
    # No `size`: an extra mount lives on the student's own storage (archived with it, inside its size), on both
    # backends. A volume of its own per student per mount is a claim KubeSpawner cannot make (it ensures one).

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_mount_path(check_template(value))


class Storage(Strict):
    """Where student files live. Changing the layout of a running presentation would orphan files and is refused."""

    layout: Layout | None = Field(
        None,
        description=(
            "`personal-subfolder`: one personal store per student, the course works in "
            "`/home/{username}/{COURSE}-{PRESENTATION}`; `per-presentation`: one volume per student per "
            "presentation, archived and removed with it; `ephemeral`: nothing is kept (workshops)."
        ),
    )
    size: Memory | None = Field(None, description="Size of each student's volume, e.g. `5Gi`.")
    extra_mounts: list[ExtraMount] = Field(default_factory=list, description="Extra directories to mount.")


class SeedStep(Strict):
    """Course material copied into the course folder on first start."""

    source: str = Field(
        description=(
            "A directory of material, relative to the file that names it. Regular files only (symlinks are "
            "skipped). On Kubernetes each source ships as a ConfigMap, so it must stay under 900 KiB (file "
            "contents plus paths): bake larger material (datasets, media) into the course image instead."
        )
    )
    target: str = Field(
        ".",
        description="Where in the course folder it goes; `.` is the course folder itself. A relative path without "
        "`..`: material never lands outside the course folder.",
    )
    overwrite: Overwrite = Field(
        "if-unchanged",
        description=(
            "`never`: copy only files that do not exist; `always`: replace every file (destroys student edits); "
            "`if-unchanged`: update a file only while it still has the hash hubfleet last copied."
        ),
    )

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return check_seed_target(check_template(value))


class LocalEnvironment(Strict):
    """What a profile needs on the local backend, which cannot pull container images: hubfleet builds one Python
    environment per distinct spec (on top of its own JupyterLab) and runs the profile's servers and kernels in it."""

    requirements: list[Requirement] = Field(
        default_factory=list, description="Python packages, one requirement each, ideally pinned: `six==1.17.0`."
    )
    requirements_file: str | None = Field(
        None,
        description="A pip requirements file inside the catalog, relative to the file that names it; one requirement "
        "per line (`#` comments allowed, pip options such as `-r` or `--index-url` are not).",
    )
    debian: list[DebianPackage] = Field(
        default_factory=list,
        description="Debian packages installed machine-wide with apt-get (the fleet must run as root), e.g. "
        "`postgresql`. They are not confined to this profile.",
    )


class Image(Strict):
    """A container image a student may choose (a profile)."""

    name: str = Field(description="Short DNS-1123 name, unique within the course.")
    image: ImageRef = Field(
        description="The container image, ideally pinned to a tag or digest; checked against the OCI reference "
        "grammar (`[registry/]path[:tag][@sha256:digest]`)."
    )
    display_name: str | None = Field(None, description="What students see in the profile list.")
    description: str | None = Field(None, description="A line under the display name.")
    default: bool = Field(False, description="Preselected in the profile list.")
    resources: Resources | None = Field(None, description="Overrides the course resources for this image.")
    local_environment: LocalEnvironment | None = Field(
        None, description="Local backend: the software this profile needs (the image itself is not used there). "
        "Unset: the profile runs on the default environment, hubfleet's own Python with JupyterLab.",
    )


class Extensions(Strict):
    """Per-course JupyterLab configuration, applied through the server's config dirs, never the student's home."""

    disabled: list[ExtensionId] = Field(
        default_factory=list,
        description="Extension or plugin ids to disable (`page_config.json`): an npm package name, optionally "
        "with `:plugin`, e.g. `@jupyterlab/extensionmanager-extension`.",
    )
    settings: dict[ExtensionId, Annotated[dict, AfterValidator(check_json)]] = Field(
        default_factory=dict,
        description="Settings overrides per plugin id (`overrides.json`), e.g. `@jupyterlab/notebook-extension:tracker`.",
    )


class Team(Strict):
    """Course staff. Instructors may start, stop and open their students' servers; tutors may open them."""

    instructors: list[Username] = Field(default_factory=list, description="Usernames of instructors.")
    tutors: list[Username] = Field(default_factory=list, description="Usernames of tutors.")


class CsvColumns(Strict):
    username: str = Field("username", description="Column holding the login name.")
    role: str | None = Field(None, description="Column holding the role (student, tutor, instructor).")


class CsvSource(Strict):
    """A roster file exported from a student-records system or a VLE."""

    csv: str = Field(description="Path of the CSV file, relative to the file that names it.")
    preset: Literal["hubfleet", "student-records", "moodle", "canvas"] = Field(
        "hubfleet",
        description=(
            "Column layout: `hubfleet` (username[,role]), `student-records` (PERSON_ID,USERNAME,...), "
            "`moodle` (participant export), `canvas` (gradebook/people export)."
        ),
    )
    columns: CsvColumns | None = Field(None, description="Explicit columns; overrides the preset.")
    role: Role = Field("student", description="Role of rows that carry none.")


class UsersSource(Strict):
    """A static list in the catalog, for small groups and workshops."""

    users: list[Username] = Field(description="Usernames.")
    role: Role = Field("student", description="Their role.")


class LdapQuery(Strict):
    group: str | None = Field(None, description="DN of a group whose `member`/`memberUid` values are the students.")
    filter: str | None = Field(None, description="An LDAP filter selecting the students.")
    attribute: str = Field("uid", description="The attribute holding the username.")
    base: str | None = Field(None, description="Search base for `filter`; defaults to the fleet's LDAP base.")


class LdapSource(Strict):
    """Members of an LDAP group or filter, read at every sync."""

    ldap: LdapQuery
    role: Role = Field("student", description="Their role.")


class IdpGroupSource(Strict):
    """Anyone whose login token carries this group is enrolled when they log in ("auth affinity")."""

    idp_group: str = Field(description="The group name as the identity provider sends it in the groups claim.")
    role: Role = Field("student", description="Their role.")


_SOURCE_KEYS = {"csv": "csv", "users": "users", "ldap": "ldap", "idp_group": "idp_group"}


def _source_kind(value: object) -> str | None:
    """Pick the source type by its one identifying key, so an error names that source, not four guesses."""
    if isinstance(value, BaseModel):
        return next(k for k in _SOURCE_KEYS if hasattr(value, k))
    if isinstance(value, dict):
        for key in _SOURCE_KEYS:
            if key in value:
                return key
    return None


EnrolmentSource = Annotated[
    Union[
        Annotated[CsvSource, Tag("csv")],
        Annotated[UsersSource, Tag("users")],
        Annotated[LdapSource, Tag("ldap")],
        Annotated[IdpGroupSource, Tag("idp_group")],
    ],
    Discriminator(
        _source_kind,
        custom_error_type="enrolment_source",
        custom_error_message="an enrolment source needs one of the keys csv, users, ldap or idp_group",
    ),
]


class Overrides(Strict):
    """Settings a presentation may override; unset means the course's, then the fleet default."""

    images: list[Image] | None = Field(None, description="Profiles offered to students.")
    resources: Resources | None = Field(None, description="CPU and memory per server.")
    storage: Storage | None = Field(None, description="Storage layout, size and extra mounts.")
    extensions: Extensions | None = Field(None, description="JupyterLab extension config.")
    seed: list[SeedStep] | None = Field(None, description="Course material to seed.")
    culling: Culling | None = Field(None, description="Idle culling.")
    hibernate_after: HibernateAfter | None = Field(None, description=_HIBERNATE_DOC + " Unset: the fleet default.")
    container_user: Literal["username", "jovyan"] | None = Field(
        None, description="`username`: the real username inside the container; `jovyan`: the image default."
    )


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class WeeklySlot(Strict):
    """A teaching session every week of the presentation (from its start to its end date)."""

    weekday: Weekday = Field(description="Day of the week: `mon` ... `sun`.")
    start: str = Field(pattern=_CLOCK, description="Start time, `HH:MM`, in the fleet's local time.")
    duration: Duration = Field(description="Length: seconds, `90m`, `2h`.")
    attendance: float = Field(
        1.0, gt=0, le=1,
        description="Share of the enrolled students expected to start a server at this session (0-1]. Sizes the "
        "pre-warming: too low and the first arrivals queue for nodes, too high and idle capacity is paid for.",
    )


class OneOffEvent(Strict):
    """A dated session (an exam, a workshop) on top of the weekly slots."""

    name: str = Field("session", description="What it is, shown in `hubfleet plan`.")
    date: dt.date = Field(description="The day (YYYY-MM-DD).")
    start: str = Field(pattern=_CLOCK, description="Start time, `HH:MM`, local time.")
    duration: Duration = Field(description="Length: seconds, `90m`, `2h`.")
    attendance: float = Field(1.0, gt=0, le=1, description="Share of the enrolled students expected (0-1].")


class Timetable(Strict):
    """When a presentation's students arrive, so the hub is awake and capacity is warm before they do."""

    weekly: list[WeeklySlot] = Field(default_factory=list, description="Recurring weekly sessions.")
    events: list[OneOffEvent] = Field(default_factory=list, description="Dated one-off sessions.")
    ical: str | None = Field(
        None,
        description="An iCalendar (`.ics`) file, relative to the file that names it, with more sessions (e.g. "
        "exported from the timetabling system). Its VEVENTs' DTSTART/DTEND (local time or UTC `Z`) count as "
        "sessions with attendance `X-HUBFLEET-ATTENDANCE` (default 1). Where sessions overlap, the largest "
        "attendance wins, so an override never lowers what the catalog asks for.",
    )


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


class Presentation(Overrides):
    """One run of a course, with its own dates and students."""

    id: str = Field(description="Presentation id, e.g. `2026J`; frozen once students have files.")
    start: dt.date = Field(description="First teaching day (YYYY-MM-DD).")
    end: dt.date = Field(description="Last teaching day (YYYY-MM-DD); after it the hub becomes read-only.")
    expected_students: int = Field(0, ge=0, description="Sizing hint for quotas and cost.")
    enrolment: list[EnrolmentSource] = Field(default_factory=list, description="Where the students come from.")
    team: Team | None = Field(None, description="Staff added for this presentation only.")
    title: str | None = Field(None, description="Overrides the course title, e.g. for a summer school.")
    timetable: Timetable | None = Field(None, description="Sessions, for waking and pre-warming ahead of them.")


class Course(Overrides):
    """A course (module) and its presentations; one file per course in a folder catalog."""

    code: str = Field(description="Course code, e.g. `TM351`; hub names and storage paths derive from it.")
    title: str = Field(description="Human title.")
    unit: str | None = Field(None, description="The unit (faculty/school) id; required for the per-unit topology.")
    team: Team = Field(default_factory=Team, description="Instructors and tutors of every presentation.")
    presentations: list[Presentation] = Field(default_factory=list, description="The runs of the course.")


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
    hibernate_after: HibernateAfter = Field(1800, description=_HIBERNATE_DOC)


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
        default_factory=list, description="Unit admins: approve and see this unit's hub requests and hubs."
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
    units: list[Unit] = Field(default_factory=list, description="Faculties or schools.")
    prewarm: Prewarm = Field(default_factory=Prewarm, description="Lead times for timetable pre-warming.")
    directory: Directory | None = Field(None, description="LDAP directory for `ldap:` enrolment sources.")
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings,
        description="`backend: kubernetes` only: where the personal store is, storage classes.",
    )
    platform_team: list[Username] = Field(
        default_factory=list, description="Usernames with admin on every hub; nobody else is a global admin."
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
    courses: list[Course] = Field(default_factory=list)
