"""The settings a course or a presentation may override: what each student's server gets.

Images (profiles), resources, storage, JupyterLab extensions, seed material, culling and hibernation. A
presentation's value wins over its course's, which wins over the fleet's ``defaults`` (the planner merges them).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from hubfleet.catalog.grammar import (
    HIBERNATE_DOC, DebianPackage, ExtensionId, HibernateAfter, ImageRef, Requirement, Strict, check_json,
    check_mount_path, check_seed_target, check_template, new_dict, new_list,
)
from hubfleet.catalog.quantities import Cpu, Memory

Layout = Literal["personal-subfolder", "per-presentation", "ephemeral"]
Overwrite = Literal["never", "always", "if-unchanged"]


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
    extra_mounts: list[ExtraMount] = Field(default_factory=new_list, description="Extra directories to mount.")


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
        default_factory=new_list, description="Python packages, one requirement each, ideally pinned: `six==1.17.0`."
    )
    requirements_file: str | None = Field(
        None,
        description="A pip requirements file inside the catalog, relative to the file that names it; one requirement "
        "per line (`#` comments allowed, pip options such as `-r` or `--index-url` are not).",
    )
    debian: list[DebianPackage] = Field(
        default_factory=new_list,
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
        default_factory=new_list,
        description="Extension or plugin ids to disable (`page_config.json`): an npm package name, optionally "
        "with `:plugin`, e.g. `@jupyterlab/extensionmanager-extension`.",
    )
    settings: dict[ExtensionId, Annotated[dict, AfterValidator(check_json)]] = Field(
        default_factory=new_dict,
        description="Settings overrides per plugin id (`overrides.json`), e.g. `@jupyterlab/notebook-extension:tracker`.",
    )


class Overrides(Strict):
    """Settings a presentation may override; unset means the course's, then the fleet default."""

    images: list[Image] | None = Field(None, description="Profiles offered to students.")
    resources: Resources | None = Field(None, description="CPU and memory per server.")
    storage: Storage | None = Field(None, description="Storage layout, size and extra mounts.")
    extensions: Extensions | None = Field(None, description="JupyterLab extension config.")
    seed: list[SeedStep] | None = Field(None, description="Course material to seed.")
    culling: Culling | None = Field(None, description="Idle culling.")
    hibernate_after: HibernateAfter | None = Field(None, description=HIBERNATE_DOC + " Unset: the fleet default.")
    container_user: Literal["username", "jovyan"] | None = Field(
        None, description="`username`: the real username inside the container; `jovyan`: the image default."
    )
