"""OAuth 2.0 as Bitbucket Cloud does it: the token store, /site/oauth2/access_token and /site/oauth2/authorize."""

import base64
import dataclasses
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


class TokenStore:
    """Every token the emulator issued; one lock, since 50 clients may ask at once."""

    def __init__(self, mode):
        self.mode = mode
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

    def new_code(self, consumer, user, redirect_uri):
        """Issue an authorization code."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = AuthCode(code, consumer, user, redirect_uri, time.time() + CODE_LIFETIME)
        return code

    def _issue(self, consumer, user, refresh=None, with_refresh=True):
        """Issue an access token (and a refresh token); the caller holds the lock."""
        access = AccessGrant(new_token(), consumer, user, consumer.scopes, time.time() + ACCESS_TOKEN_LIFETIME)
        self._access[access.token] = access
        self._issued.append(access.token)
        if refresh is None and with_refresh:
            refresh = RefreshGrant(new_token(), consumer, user, consumer.scopes)
            self._refresh[refresh.token] = refresh
            self._issued.append(refresh.token)
        return access, refresh

    def client_credentials(self, consumer):
        """The consumer's owner is the principal; since 2026-05-04 no refresh token comes with it."""
        with self._lock:
            return self._issue(consumer, consumer.owner, with_refresh=self.mode == "legacy")

    def exchange_code(self, consumer, code, redirect_uri):
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
            grant.used = True
            return self._issue(consumer, grant.user)

    def refresh(self, consumer, token):
        """Refresh; rotates the refresh token in current mode, keeps it in legacy mode. None if invalid."""
        with self._lock:
            grant = self._refresh.get(token or "")
            if grant is None or grant.used or grant.consumer is not consumer:
                return None
            if self.mode == "legacy":
                return self._issue(consumer, grant.user, refresh=grant)
            # Rotation: the used refresh token stops working at once.
            grant.used = True
            return self._issue(consumer, grant.user)


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
