"""The fleet's embedded OpenID Connect provider: the portal signs students in once for every hub.

Why a small code-flow provider written here, on joserfc (authlib's JOSE successor: ``authlib.jose`` is deprecated
in its favour) for keys and signatures, rather than authlib's ``AuthorizationServer``: authlib's server ships
framework integrations for Flask and Django only. On FastAPI we would write the request/response adapter, every
storage hook (client lookup, code save/fetch/delete, token save, user lookup) and the OIDC grant extension
ourselves, which is more code than the one flow we need, spread across authlib's hook points. Our clients are only
this fleet's hubs (confidential, registered from the state dir), and the only grant is the authorization code
(with PKCE), so the standard fits in one readable module. What is implemented, and where the specs say so:

* discovery ``/.well-known/openid-configuration`` (OIDC Discovery 1.0 §3) and the key set ``/oauth/jwks``;
* ``/oauth/authorize`` (RFC 6749 §4.1.1): the client and its exact redirect URI are checked *before* anything is
  redirected (§3.1.2.4: never redirect to an unverified URI); no portal session -> the login page, which comes
  back here; a registered hub is approved without a consent screen (it is the fleet's own);
* ``/oauth/token`` (§4.1.3): client_secret_basic or _post, one-time codes bound to client and redirect URI that
  expire in a minute, PKCE S256 when the client sent a challenge (RFC 7636 §4.6); an ``id_token`` signed RS256;
* ``/oauth/userinfo`` (OIDC Core §5.3) with ``preferred_username`` and ``groups``.

Codes live in this process's memory (the portal is one uvicorn worker) and die with it; a restart in the middle
of a login costs one retry. Access tokens are signed, not stored, so they survive a portal restart; they are
short-lived and userinfo reads the directory afresh on every call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.jwk import RSAKey

from hubfleet.web.auth import PORTAL_PREFIX, current_user
from hubfleet.web.directory import Client, UserDirectory

__all__ = ["Provider", "load_or_create_key", "router"]

CODE_TTL = 60
TOKEN_TTL = 3600
SCOPES = ["openid", "profile", "groups"]

router = APIRouter()


def load_or_create_key(path: Path) -> RSAKey:
    """The provider's RS256 signing key: generated once (0600) and then only read, so id_tokens stay verifiable
    across restarts. Written under a temporary name and hard-linked into place (link fails if the file exists), so
    two portals starting together agree on one key and nobody ever reads a half-written file."""
    try:
        return RSAKey.import_key(json.loads(path.read_text()))
    except FileNotFoundError:
        pass
    key = RSAKey.generate_key(2048, auto_kid=True, private=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(key.as_dict(private=True)))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return RSAKey.import_key(json.loads(path.read_text()))
    finally:
        tmp.unlink(missing_ok=True)
    return key


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    user: str
    scope: str
    nonce: str | None
    challenge: str | None
    expires: float
    auth_time: int


class Provider:
    """State of the provider: key, directory, token signer, and the outstanding authorization codes."""

    def __init__(self, directory: UserDirectory, key: RSAKey, token_secret: str) -> None:
        self.directory = directory
        self.key = key
        self._tokens = URLSafeTimedSerializer(token_secret, salt="hubfleet-oidc-access-token")
        self._codes: dict[str, _Grant] = {}
        self._lock = threading.Lock()  # FastAPI runs sync endpoints in a thread pool

    def issue_code(self, grant: _Grant) -> str:
        code = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Drop expired codes as we go, so abandoned logins cannot grow the table.
            for stale in [c for c, g in self._codes.items() if g.expires < now]:
                del self._codes[stale]
            self._codes[code] = grant
        return code

    def redeem(self, code: str) -> _Grant | None:
        with self._lock:
            grant = self._codes.pop(code, None)  # one use only (RFC 6749 §4.1.2)
        return grant if grant and grant.expires >= time.monotonic() else None

    def access_token(self, user: str, client_id: str, scope: str) -> str:
        return self._tokens.dumps({"u": user, "c": client_id, "s": scope})

    def read_access_token(self, token: str) -> dict | None:
        try:
            return self._tokens.loads(token, max_age=TOKEN_TTL)
        except BadSignature:
            return None


def _provider(request: Request) -> Provider:
    return request.app.state.oidc


def issuer(request: Request) -> str:
    """The front door's ``/portal`` as the browser knows it (fleet.json), else the address this request came to."""
    front = (request.app.state.source.fleet() or {}).get("front_door")
    base = str(front).rstrip("/") if front else str(request.base_url).rstrip("/")
    return base + PORTAL_PREFIX


@router.get("/.well-known/openid-configuration")
def discovery(request: Request) -> JSONResponse:
    iss = issuer(request)
    return JSONResponse({
        "issuer": iss,
        "authorization_endpoint": f"{iss}/oauth/authorize",
        "token_endpoint": f"{iss}/oauth/token",
        "userinfo_endpoint": f"{iss}/oauth/userinfo",
        "jwks_uri": f"{iss}/oauth/jwks",
        "end_session_endpoint": f"{iss}/logout",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES,
        "claims_supported": ["sub", "preferred_username", "name", "groups"],
    })  # fmt: skip


@router.get("/oauth/jwks")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse({"keys": [_provider(request).key.as_dict(private=False) | {"use": "sig", "alg": "RS256"}]})


def _error_page(request: Request, message: str, status: int = 400) -> Response:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", request.app.state.page_context(message=message), status_code=status)


@router.get("/oauth/authorize")
def authorize(request: Request) -> Response:
    q = request.query_params
    provider = _provider(request)
    client = provider.directory.client(q.get("client_id", ""))
    if client is None or q.get("redirect_uri", client.redirect_uri) != client.redirect_uri:
        # An unknown client or a redirect URI that is not the registered one: tell the person, redirect nowhere.
        return _error_page(request, "This sign-in link is not from one of this fleet's hubs.")

    def back(**params: str) -> RedirectResponse:
        if q.get("state"):
            params["state"] = q["state"]
        return RedirectResponse(f"{client.redirect_uri}?{urlencode(params)}", status_code=302)

    if q.get("response_type") != "code":
        return back(error="unsupported_response_type")
    if q.get("code_challenge") and q.get("code_challenge_method", "plain") != "S256":
        return back(error="invalid_request", error_description="only S256 code challenges are accepted")
    user = current_user(request)
    if user is None:
        target = f"{PORTAL_PREFIX}/oauth/authorize?{request.url.query}"
        return RedirectResponse(f"{PORTAL_PREFIX}/login?{urlencode({'next': target})}", status_code=302)
    code = provider.issue_code(_Grant(
        client.client_id, client.redirect_uri, user, q.get("scope", "openid"), q.get("nonce"),
        q.get("code_challenge"), time.monotonic() + CODE_TTL, int(time.time()),
    ))  # fmt: skip
    return back(code=code)


def _client_credentials(request: Request, form: dict) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            raw = base64.b64decode(header[6:]).decode()
        except (ValueError, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = raw.partition(":")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
        return unquote_plus(client_id), unquote_plus(secret)
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


def _token_error(error: str, status: int = 400, description: str = "") -> JSONResponse:
    body = {"error": error} | ({"error_description": description} if description else {})
    headers = {"Cache-Control": "no-store"} | ({"WWW-Authenticate": 'Basic realm="hubfleet"'} if status == 401 else {})
    return JSONResponse(body, status_code=status, headers=headers)


@router.post("/oauth/token")
async def token(request: Request) -> JSONResponse:
    form = dict(await request.form())
    provider = _provider(request)
    client_id, secret = _client_credentials(request, form)
    client: Client | None = provider.directory.client(client_id)
    if client is None or not hmac.compare_digest(secret.encode(), client.secret.encode()):
        return _token_error("invalid_client", 401)
    if form.get("grant_type") != "authorization_code":
        return _token_error("unsupported_grant_type")
    grant = provider.redeem(str(form.get("code", "")))
    if grant is None or grant.client_id != client.client_id or form.get("redirect_uri", grant.redirect_uri) != grant.redirect_uri:
        return _token_error("invalid_grant", description="code unknown, used, expired or not issued to you")
    if grant.challenge:
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not hmac.compare_digest(digest, grant.challenge):
            return _token_error("invalid_grant", description="PKCE verification failed")
    now = int(time.time())
    claims = {
        "iss": issuer(request), "sub": grant.user, "aud": client.client_id, "iat": now, "exp": now + TOKEN_TTL,
        "auth_time": grant.auth_time, "preferred_username": grant.user,
        "groups": provider.directory.groups_for(grant.user, client.client_id),
    }  # fmt: skip
    if grant.nonce:
        claims["nonce"] = grant.nonce
    id_token = jwt.encode({"alg": "RS256", "kid": provider.key.kid}, claims, provider.key)
    body = {
        "access_token": provider.access_token(grant.user, client.client_id, grant.scope),
        "token_type": "Bearer", "expires_in": TOKEN_TTL, "scope": grant.scope, "id_token": id_token,
    }  # fmt: skip
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.api_route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo(request: Request) -> JSONResponse:
    header = request.headers.get("authorization", "")
    data = _provider(request).read_access_token(header[7:].strip()) if header.lower().startswith("bearer ") else None
    directory = _provider(request).directory
    if data is None or not directory.exists(data["u"]):
        # RFC 6750 §3.1
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    user = data["u"]
    return JSONResponse({"sub": user, "preferred_username": user, "name": user, "groups": directory.groups_for(user, data["c"])})
