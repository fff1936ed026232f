"""OAuth 2.0 as Bitbucket Cloud does it: the token store, /site/oauth2/access_token and /site/oauth2/authorize."""

import base64
import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
import typing
import urllib.parse

from .responses import Response, html_response, json_response

ACCESS_TOKEN_LIFETIME = 7200
CODE_LIFETIME = 600


def new_token():
    """A random token shaped like Bitbucket's: standard base64 (so it may hold + / =), 88 to 116 chars."""
    return base64.b64encode(secrets.token_bytes(64 + secrets.randbelow(23))).decode("ascii")


@dataclasses.dataclass
class AccessGrant:
    """An issued OAuth access token and who it acts for."""

    token: str
    consumer: typing.Any
    user: typing.Any
    scopes: tuple
    expires_at: float
    expired: bool = False

    def is_expired(self, now=None):
        """True once the lifetime has passed or the test control expired it."""
        return self.expired or (now or time.time()) >= self.expires_at


@dataclasses.dataclass
class RefreshGrant:
    """An issued refresh token."""

    token: str
    consumer: typing.Any
    user: typing.Any
    scopes: tuple
    used: bool = False


@dataclasses.dataclass
class AuthCode:
    """An authorization code waiting to be exchanged."""

    code: str
    consumer: typing.Any
    user: typing.Any
    redirect_uri: str
    expires_at: float
    used: bool = False
    scopes: tuple = None  # None: the consumer's scopes (Cloud); Data Center grants what was asked for
    challenge: str = None  # PKCE (RFC 7636), Data Center only
    method: str = None

    def verifier_matches(self, verifier):
        """Whether the PKCE code_verifier fits the challenge (true when no challenge was given)."""
        if self.challenge is None:
            return True
        if not verifier:
            return False
        if self.method == "S256":
            digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
            verifier = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
        return hmac.compare_digest(verifier.encode("utf-8"), self.challenge.encode("utf-8"))


class TokenStore:
    """Every token the emulator issued; one lock, since 50 clients may ask at once."""

    def __init__(self, mode, lifetime=ACCESS_TOKEN_LIFETIME):
        self.mode = mode
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._access = {}
        self._refresh = {}
        self._codes = {}
        self._issued = []

    def issued(self):
        """Every access and refresh token issued so far, in order."""
        with self._lock:
            return list(self._issued)

    def lookup(self, token):
        """The AccessGrant for token, or None."""
        with self._lock:
            return self._access.get(token)

    def expire_all(self):
        """Make every issued access token expired; returns how many."""
        with self._lock:
            for grant in self._access.values():
                grant.expired = True
            return len(self._access)

    def new_code(self, consumer, user, redirect_uri, scopes=None, challenge=None, method=None):
        """Issue an authorization code."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = AuthCode(code, consumer, user, redirect_uri, time.time() + CODE_LIFETIME, False, scopes, challenge, method)
        return code

    def _issue(self, consumer, user, refresh=None, with_refresh=True, scopes=None):
        """Issue an access token (and a refresh token); the caller holds the lock."""
        scopes = consumer.scopes if scopes is None else scopes
        access = AccessGrant(new_token(), consumer, user, scopes, time.time() + self.lifetime)
        self._access[access.token] = access
        self._issued.append(access.token)
        if refresh is None and with_refresh:
            refresh = RefreshGrant(new_token(), consumer, user, scopes)
            self._refresh[refresh.token] = refresh
            self._issued.append(refresh.token)
        return access, refresh

    def client_credentials(self, consumer):
        """The consumer's owner is the principal; since 2026-05-04 no refresh token comes with it."""
        with self._lock:
            return self._issue(consumer, consumer.owner, with_refresh=self.mode == "legacy")

    def exchange_code(self, consumer, code, redirect_uri, verifier=None):
        """Trade an authorization code for tokens; returns (access, refresh) or an error description."""
        with self._lock:
            grant = self._codes.get(code or "")
            if grant is None or grant.consumer is not consumer:
                return "The authorization code is invalid."
            if grant.used:
                return "The authorization code has already been used."
            if time.time() >= grant.expires_at:
                return "The authorization code has expired."
            expected = grant.redirect_uri or consumer.callback_url
            if (redirect_uri and redirect_uri != expected) or (grant.redirect_uri and not redirect_uri):
                return "The redirect_uri does not match the one used in the authorization request."
            # A wrong verifier uses the code up too: whoever sent it may have stolen the code.
            grant.used = True
            if not grant.verifier_matches(verifier):
                return "The code_verifier does not match the code_challenge."
            return self._issue(consumer, grant.user, scopes=grant.scopes)

    def refresh(self, consumer, token):
        """Refresh; rotates the refresh token in current mode, keeps it in legacy mode. None if invalid."""
        with self._lock:
            grant = self._refresh.get(token or "")
            if grant is None or grant.used or grant.consumer is not consumer:
                return None
            if self.mode == "legacy":
                return self._issue(consumer, grant.user, refresh=grant, scopes=grant.scopes)
            # Rotation: the used refresh token stops working at once.
            grant.used = True
            return self._issue(consumer, grant.user, scopes=grant.scopes)


def _json(body, status=200):
    return json_response(body, status, {"Cache-Control": "no-store"})


def _oauth_error(error, description):
    # Bitbucket puts error_description first and answers 400 for every token-endpoint error.
    return _json({"error_description": description, "error": error}, 400)


def token_endpoint(request, directory, store):
    """POST /site/oauth2/access_token."""
    if request.method != "POST":
        return Response("Method Not Allowed", status=405, content_type="text/plain", headers={"Allow": "POST"})
    auth = request.authorization
    if auth is None or auth.type != "basic":
        # Only HTTP Basic client authentication is accepted, even if the form has client_secret.
        return _oauth_error("unauthorized_client", "Requests must be authenticated using OAuth client credentials")
    consumer = directory.consumers.get(auth.username or "")
    if consumer is None or not hmac.compare_digest(consumer.secret.encode(), (auth.password or "").encode()):
        return _oauth_error("unauthorized_client", "Invalid OAuth client credentials")
    grant_type = request.form.get("grant_type")
    if grant_type == "client_credentials":
        result = store.client_credentials(consumer)
    elif grant_type == "refresh_token":
        result = store.refresh(consumer, request.form.get("refresh_token"))
        if result is None:
            return _oauth_error("invalid_request", "Invalid refresh_token")
    elif grant_type == "authorization_code":
        result = store.exchange_code(consumer, request.form.get("code"), request.form.get("redirect_uri"))
        if isinstance(result, str):
            return _oauth_error("invalid_grant", result)
    else:
        return _oauth_error("invalid_grant", "Unsupported grant type: %s" % grant_type)
    access, refresh = result
    # Bitbucket's key was "scopes" until 2026-05-04 and is "scope" since.
    body = {"access_token": access.token, "scopes" if store.mode == "legacy" else "scope": " ".join(access.scopes)}
    body.update({"expires_in": ACCESS_TOKEN_LIFETIME, "token_type": "bearer", "state": grant_type})
    if refresh is not None:
        body["refresh_token"] = refresh.token
    return _json(body)


def _under(uri, base):
    """Bitbucket accepts a redirect_uri on the callback URL's scheme and host, at or below its path."""
    one, two = urllib.parse.urlsplit(uri), urllib.parse.urlsplit(base)
    if (one.scheme.lower(), one.netloc.lower()) != (two.scheme.lower(), two.netloc.lower()):
        return False
    return (one.path or "/").startswith(two.path or "/")


def _with_params(url, params):
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def authorize_endpoint(request, directory, store):
    """GET /site/oauth2/authorize: approve at once for the test user named in emulator_user."""
    consumer = directory.consumers.get(request.args.get("client_id", ""))
    if consumer is None:
        return html_response("Invalid client_id", "Invalid client_id: no OAuth consumer has this key.", 400)
    if request.args.get("response_type") != "code":
        return html_response("Unsupported response_type", "Only response_type=code is supported.", 400)
    redirect_uri = request.args.get("redirect_uri")
    if redirect_uri and not (consumer.callback_url and _under(redirect_uri, consumer.callback_url)):
        return html_response("Invalid redirect_uri", "Invalid redirect_uri - This integration is misconfigured.", 400)
    target = redirect_uri or consumer.callback_url
    if not target:
        return html_response("Invalid redirect_uri", "This OAuth consumer has no callback URL.", 400)
    # There is no login page: a test names the approving user instead.
    username = request.args.get("emulator_user") or request.headers.get("X-Emulator-User")
    user = directory.users.get((username or "").lower())
    if user is None:
        hint = "Unknown emulator_user." if username else "Pass emulator_user=<username> (or the X-Emulator-User header) to approve."
        return html_response("Log in to Bitbucket", "Login required. " + hint)
    params = {"code": store.new_code(consumer, user, redirect_uri)}
    if "state" in request.args:
        params["state"] = request.args["state"]
    return Response("", status=302, headers={"Location": _with_params(target, params)})


# --- Bitbucket Data Center: /rest/oauth2/latest/authorize and /rest/oauth2/latest/token ---------

DC_ACCESS_TOKEN_LIFETIME = 3600
DC_DEFAULT_SCOPE = "PUBLIC_REPOS"
DC_DEFAULT_USER = "alice"


def _dc_error(error, description, status=400):
    return _json({"error": error, "error_description": description}, status)


def dc_token_endpoint(request, directory, store):
    """POST /rest/oauth2/latest/token: client_id and client_secret are parameters (form or query), never Basic."""
    if request.method != "POST":
        return Response("Method Not Allowed", status=405, content_type="text/plain", headers={"Allow": "POST"})
    params = request.values  # the query string and the form, as Data Center reads both
    app = directory.applications.get(params.get("client_id") or "")
    secret = params.get("client_secret") or ""
    if app is None or not hmac.compare_digest(app.secret.encode("utf-8"), secret.encode("utf-8")):
        return _dc_error("invalid_client", "Client authentication failed: send a valid client_id and client_secret "
                         "as parameters (HTTP Basic client authentication is not used).", 401)
    grant_type = params.get("grant_type")
    if grant_type == "authorization_code":
        result = store.exchange_code(app, params.get("code"), params.get("redirect_uri"), params.get("code_verifier"))
        if isinstance(result, str):
            return _dc_error("invalid_grant", result)
    elif grant_type == "refresh_token":
        result = store.refresh(app, params.get("refresh_token"))
        if result is None:
            return _dc_error("invalid_grant", "The refresh token is invalid, expired or already used.")
    else:
        return _dc_error("unsupported_grant_type", "The grant type %r is not supported: Bitbucket Data Center supports "
                         "authorization_code (with or without PKCE) and refresh_token." % (grant_type or ""))
    access, refresh = result
    return _json({"scope": " ".join(access.scopes), "access_token": access.token, "token_type": "bearer",
                  "expires_in": store.lifetime, "refresh_token": refresh.token})


def dc_authorize_endpoint(request, directory, store):
    """GET /rest/oauth2/latest/authorize: approves at once, as alice unless emulator_user names another user."""
    args = request.args
    app = directory.applications.get(args.get("client_id", ""))
    if app is None:
        return html_response("Invalid client_id", "No incoming application link has this client_id.", 400)
    given_uri = args.get("redirect_uri")
    if given_uri is not None and given_uri != app.callback_url:
        return html_response("Invalid redirect_uri", "The redirect_uri does not match the application link's.", 400)
    target = given_uri or app.callback_url
    state = {"state": args["state"]} if "state" in args else {}

    def refuse(error, description):
        return Response("", status=302, headers={"Location": _with_params(target, dict({"error": error, "error_description": description}, **state))})

    if args.get("response_type") != "code":
        return refuse("unsupported_response_type", "Only response_type=code is supported.")
    scopes = tuple((args.get("scope") or DC_DEFAULT_SCOPE).split())
    wrong = [scope for scope in scopes if scope not in app.scopes]
    if wrong:
        return refuse("invalid_scope", "Unknown or not allowed scope: %s" % " ".join(wrong))
    challenge = args.get("code_challenge") or None
    method = args.get("code_challenge_method") or ("plain" if challenge else None)
    if method is not None and (challenge is None or method not in ("S256", "plain")):
        return refuse("invalid_request", "code_challenge_method must be S256 or plain, with a code_challenge.")
    username = args.get("emulator_user") or request.headers.get("X-Emulator-User") or DC_DEFAULT_USER
    user = directory.users.get(username.lower())
    if user is None:
        return html_response("Unknown user", "emulator_user names no user of the data file.", 400)
    params = {"code": store.new_code(app, user, given_uri, scopes, challenge, method)}
    params.update(state)
    return Response("", status=302, headers={"Location": _with_params(target, params)})
