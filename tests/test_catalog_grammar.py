"""The grammars validate applies to images, domains, extension ids and mount paths: real values pass, attacks fail."""

from __future__ import annotations

import pytest

from hubfleet.catalog.grammar import (
    check_domain, check_extension, check_image, check_json, check_mount_path, check_seed_target,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("ref", [
    "quay.io/jupyter/scipy-notebook:2026-11-24",
    "ghcr.io/example-university/tm351:2025J",
    "python",
    "localhost:5000/course/image:1",
    f"quay.io/jupyter/r-notebook@{DIGEST}",
    f"docker.io/library/python:3.12-slim@{DIGEST}",
    "registry.example.ac.uk/a__b/c--d.e:tag_1",
])
def test_real_image_references_pass(ref):
    assert check_image(ref) == ref


@pytest.mark.parametrize("ref", [
    "", "Quay.io/Jupyter/Scipy", "quay.io/jupyter/Scipy:1", "evil image", "x;rm -rf /", "$(curl x)", "../x",
    "x:tag:tag", "x@sha256:abc", "-x", "quay.io//x", "x:" + "a" * 200, "a/" * 200 + "b",
])
def test_bad_image_references_fail(ref):
    with pytest.raises(ValueError, match="image reference"):
        check_image(ref)


@pytest.mark.parametrize("domain", ["localhost", "hubs.example.ac.uk", "a-b.c0"])
def test_dns_names_pass(domain):
    assert check_domain(domain) == domain


@pytest.mark.parametrize("domain", ["", "https://hubs.example", "a..b", "-a.b", "Hubs.example", "x:443", "a_b.c",
                                    "evil.example/x", "a" * 64 + ".b"])
def test_bad_domains_fail(domain):
    with pytest.raises(ValueError, match="not a DNS name"):
        check_domain(domain)


@pytest.mark.parametrize("ext", ["@jupyterlab/extensionmanager-extension", "@jupyterlab/notebook-extension:tracker",
                                 "jupyterlab-tour:plugin", "jupyterlab_code_formatter"])
def test_extension_ids_pass(ext):
    assert check_extension(ext) == ext


@pytest.mark.parametrize("ext", ["", "@x", "a b", "../x", "</script>", "@a/b/c", "a:b:c", "A\nb"])
def test_bad_extension_ids_fail(ext):
    with pytest.raises(ValueError, match="extension or plugin id"):
        check_extension(ext)


@pytest.mark.parametrize("path", ["{course_dir}/.postgres/data", "/home/{username}/.cache/x", "{course_dir}/{presentation}"])
def test_mount_paths_inside_the_course_or_home_pass(path):
    assert check_mount_path(path) == path


@pytest.mark.parametrize("path", ["/etc/jupyter", "{course_dir}", "{course_dir}/../x", "/home/{username}",
                                  "/home/{username}/./x", "/home/{username}//x", "/home/other/x", "{course_dir}/a/../../b"])
def test_mount_paths_elsewhere_fail(path):
    with pytest.raises(ValueError):
        check_mount_path(path)


@pytest.mark.parametrize(("target", "ok"), [(".", True), ("corpus", True), ("data/{presentation}", True),
                                            ("/etc/cron.d", False), ("../x", False), ("a/../../b", False),
                                            ("{course_dir}/x", False), ("~/x", False)])
def test_seed_targets(target, ok):
    if ok:
        assert check_seed_target(target) == target
    else:
        with pytest.raises(ValueError):
            check_seed_target(target)


def test_settings_must_be_plain_json():
    assert check_json({"a": [1, 2.5, "x", None, True, {"b": {}}]})
    for bad in ({"a": float("nan")}, {1: "x"}, {"a": [{"b": object()}]}):
        with pytest.raises(ValueError):
            check_json(bad)
