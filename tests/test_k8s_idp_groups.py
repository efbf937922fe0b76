"""Identity-provider groups on Kubernetes follow the local backend's rule: they add at login, never reset (issue 9.5).

The rendered ``hub.config`` and ``hub.extraConfig`` are loaded into a real traitlets Config as the chart's
jupyterhub_config.py loads them, the authenticator is the real oauthenticator 17.4 class they name, and group
memberships live in a real JupyterHub database (in memory). What the hub's login handler does around the hook
(``auth_to_user``: sync groups from the token only when ``manage_groups`` is on) is JupyterHub's own code; here the
rendered config must keep it off, and the hook must add.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import pytest
from jupyterhub import orm
from test_k8s_render import fleet_spec, shipped
from traitlets.config import Config

from hubfleet.backends.kubernetes.values import render_values
from hubfleet.catalog.naming import check_username


def hub_config(values: dict) -> Config:
    c = Config()
    for section, cfg in values["hub"]["config"].items():  # jupyterhub_config.py: "pass-through config section"
        c[section].update(cfg)
    os.environ.setdefault("HUBFLEET_API_TOKEN", "test-token")
    for key, code in sorted(values["hub"]["extraConfig"].items()):
        # The issuer here is not reachable; discovery has its own test against a served document (test_k8s_oidc).
        if "branding" not in code and "oidc-discovery" not in key:
            exec(compile(code, "extraConfig", "exec"), {"c": c})
    return c


class Handler:
    """The parts of JupyterHub's BaseHandler the hook uses, over a real hub database."""

    def __init__(self, db):
        self.db = db

    def _wrap(self, orm_user):
        return SimpleNamespace(name=orm_user.name, orm_user=orm_user)

    def find_user(self, name):
        found = orm.User.find(self.db, name)
        return self._wrap(found) if found else None

    def user_from_username(self, name):
        user = orm.User(name=name)
        self.db.add(user)
        self.db.commit()
        return self._wrap(user)


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    for name in ("tm351-2025j", "tm351-2026b"):
        session.add(orm.Group(name=name))
    session.commit()
    yield session
    session.close()


@pytest.fixture(scope="module")
def config():
    spec = fleet_spec("per-course")
    values = render_values(spec.hub("tm351"), spec, material=shipped(spec))
    return values, hub_config(values)


def _login(authenticator, db, name: str, claimed: list[str]) -> dict | None:
    """What Authenticator.get_authenticated_user does after the IdP answered: check_allowed, then the hook."""
    auth_model = {"name": name, "admin": None,
                  "auth_state": {authenticator.user_auth_state_key: {"preferred_username": name, "groups": claimed}}}

    async def run():
        if not await authenticator.check_allowed(name, auth_model):
            return None
        return await authenticator.run_post_auth_hook(Handler(db), auth_model)

    return asyncio.run(run())


def _groups(db, name: str) -> set[str]:
    return {g.name for g in orm.User.find(db, name).groups}


def test_rendered_config_loads_and_leaves_groups_to_enrolment_sync(config):
    values, c = config
    oauth = values["hub"]["config"]["GenericOAuthenticator"]
    assert oauth["manage_groups"] is False and "allowed_groups" not in oauth and "claim_groups_key" not in oauth
    authenticator = c.JupyterHub.authenticator_class(config=c)  # oauthenticator refuses group keys without it
    assert authenticator.manage_groups is False
    assert type(authenticator).__mro__[1].__name__ == "GenericOAuthenticator"


def test_a_login_adds_idp_groups_and_keeps_the_course_groups_of_the_sync(config, db):
    _, c = config
    authenticator = c.JupyterHub.authenticator_class(config=c)
    # Enrolment sync put ada in TM351-2026B's group (and created her); her token says nothing about it.
    ada = orm.User(name="ada")
    db.add(ada)
    ada.groups.append(orm.Group.find(db, "tm351-2026b"))
    db.commit()
    authenticator.allowed_users.add("ada")  # allow_existing_users: JupyterHub adds existing users at startup
    assert _login(authenticator, db, "ada", ["staff", "tm351-students-2025"])
    assert _groups(db, "ada") == {"tm351-2026b", "tm351-2025j"}  # kept, and added through the idp group
    assert _login(authenticator, db, "ada", [])  # she left the idp group: the next login removes nothing
    assert _groups(db, "ada") == {"tm351-2026b", "tm351-2025j"}


def test_an_idp_group_admits_a_new_user_and_enrols_them_others_are_refused(config, db):
    _, c = config
    authenticator = c.JupyterHub.authenticator_class(config=c)
    assert _login(authenticator, db, "zoë", ["tm351-students-2025"])
    assert _groups(db, "zoë") == {"tm351-2025j"}
    assert "zoë" in authenticator.allowed_users  # created as JupyterHub's own login creates a user
    assert _login(authenticator, db, "mallory", ["some-other-course"]) is None
    assert orm.User.find(db, "mallory") is None


def test_ldap_hubs_get_no_oauth_rule():
    spec = fleet_spec("per-course")
    hub = spec.hub("tm351").model_copy(update={"auth": {"type": "ldap", "server": "ldaps://ldap.example",
                                                         "base_dn": "dc=example"}})
    values = render_values(hub, spec, material=shipped(spec))
    assert not any("idp" in key for key in values["hub"]["extraConfig"])


def test_a_decomposed_name_from_the_idp_is_the_rosters_composed_one(config):
    _, c = config
    authenticator = c.JupyterHub.authenticator_class(config=c)
    assert authenticator.normalize_username("Jose\u0301") == "jos\u00e9" == check_username("jos\u00e9")
