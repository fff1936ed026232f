"""Who is calling: credentials for the REST API, git over HTTPS and archive downloads."""

import dataclasses
import hmac
import typing

# X-Credential-Type values. apppassword, workspace_access_token and api_token are what Bitbucket
# sends; no recording shows the value for OAuth access tokens, so "oauth2" is our choice.
CREDENTIAL_TYPES = {
    "oauth": "oauth2",
    "workspace_access_token": "workspace_access_token",
    "apppassword": "apppassword",
    "api_token": "api_token",
}

# What an endpoint needs, per resource: (OAuth/app password/access token scope, API token scope).
REQUIRED_SCOPES = {
    "repository": ("repository", "read:repository:bitbucket"),
    "account": ("account", "read:user:bitbucket"),
    "workspace": ("account", "read:workspace:bitbucket"),
}
# OAuth-style scopes that imply others; API token scopes imply nothing.
_IMPLIED_BY = {
    "repository": ("repository:write", "project", "pullrequest", "pullrequest:write"),
    "account": ("account:write",),
}
_WRITE_SCOPES = ("repository:write", "pullrequest:write")


class AuthFailure(Exception):
    """Credentials were given but do not authenticate; reason says how, for the caller's response."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Credential:
    """An authenticated (or anonymous) caller."""

    kind: str = "anonymous"
    scopes: tuple = ()
    user: typing.Any = None
    workspace: typing.Any = None
    login: str = None

    @property
    def anonymous(self):
        """True when no credentials were sent."""
        return self.kind == "anonymous"

    @property
    def header_type(self):
        """The X-Credential-Type value (None for anonymous callers)."""
        return CREDENTIAL_TYPES.get(self.kind)

    def required_scope(self, resource):
        """The scope this caller needs for resource, as named in X-Accepted-OAuth-Scopes."""
        oauth_scope, api_token_scope = REQUIRED_SCOPES[resource]
        return api_token_scope if self.kind == "api_token" else oauth_scope

    def has_scope(self, resource):
        """Whether the caller's scopes cover resource (anonymous callers are limited by visibility instead)."""
        if self.anonymous:
            return True
        needed = self.required_scope(resource)
        if needed in self.scopes:
            return True
        return self.kind != "api_token" and any(scope in self.scopes for scope in _IMPLIED_BY.get(needed, ()))

    def roles(self, repo):
        """The role filter values (member, contributor, admin, owner) repo matches for this caller."""
        workspace = repo.workspace
        if self.user is not None and self.user.username.lower() in workspace.members:
            roles = {"member", "contributor"}
            if self.user.username.lower() in workspace.admins:
                roles.update(("admin", "owner"))
            return roles
        if self.workspace is not None and self.workspace is workspace:
            roles = {"member"}
            if any(scope in self.scopes for scope in _WRITE_SCOPES):
                roles.add("contributor")
            if "repository:admin" in self.scopes:
                roles.add("admin")
            return roles
        return set()

    def can_read(self, repo):
        """Public repositories are readable by all; private ones by members and the workspace's tokens."""
        return not repo.is_private or bool(self.roles(repo))


ANONYMOUS = Credential()


def _same(secret, given):
    return hmac.compare_digest(secret.encode("utf-8"), (given or "").encode("utf-8"))


def _find(secrets, given):
    for secret in secrets:
        if _same(secret.value, given):
            return secret
    return None


class Authenticator:
    """Turns Authorization headers (and, in legacy mode, ?access_token=) into Credentials."""

    def __init__(self, directory, store, mode):
        self.directory = directory
        self.store = store
        self.mode = mode

    def bearer(self, token):
        """An OAuth access token or a workspace access token."""
        grant = self.store.lookup(token)
        if grant is not None:
            if grant.is_expired():
                raise AuthFailure("expired_token")
            return Credential("oauth", grant.scopes, grant.user, None, grant.user.username)
        wat = self.directory.workspace_tokens.get(token)
        if wat is not None:
            return Credential("workspace_access_token", wat.scopes, None, wat.workspace, wat.bot_username)
        raise AuthFailure("invalid_token")

    def _api_token(self, user, password):
        secret = _find(user.api_tokens, password)
        if secret is None:
            return None
        if not secret.scopes:
            # Bitbucket refuses API tokens created without scopes everywhere.
            raise AuthFailure("invalid_token")
        return Credential("api_token", secret.scopes, user, None, user.username)

    def _app_password(self, user, password):
        secret = _find(user.app_passwords, password)
        if secret is None:
            return None
        return Credential("apppassword", secret.scopes, user, None, user.username)

    def _web_basic(self, username, password):
        """Basic auth on the REST API and the archive host: username + app password, or email + API token."""
        user = self.directory.users.get(username.lower())
        if user is not None:
            credential = self._app_password(user, password)
            if credential is not None:
                return credential
        by_email = self.directory.users_by_email.get(username.lower())
        if by_email is not None:
            credential = self._api_token(by_email, password)
            if credential is not None:
                return credential
        for candidate in (user, by_email):
            if candidate is not None and candidate.password and _same(candidate.password, password):
                raise AuthFailure("account_password")
        raise AuthFailure("bad_credentials")

    def api(self, request):
        """The caller of a REST request; anonymous when nothing was sent."""
        auth = request.authorization
        if auth is not None:
            if auth.type == "bearer":
                return self.bearer(auth.token or "")
            if auth.type == "basic":
                return self._web_basic(auth.username or "", auth.password or "")
            raise AuthFailure("bad_credentials")
        if request.headers.get("Authorization"):
            raise AuthFailure("bad_credentials")
        # Until 2026-05-04 a query parameter could carry the token; now it is ignored.
        token = request.args.get("access_token")
        if token and self.mode == "legacy":
            return self.bearer(token)
        return ANONYMOUS

    def git(self, request):
        """The caller of a git smart HTTP request (Basic only, as git sends it)."""
        auth = request.authorization
        if auth is None:
            if request.headers.get("Authorization"):
                raise AuthFailure("bad_credentials")
            return ANONYMOUS
        if auth.type != "basic":
            raise AuthFailure("bad_credentials")
        username, password = auth.username or "", auth.password or ""
        if username == "x-token-auth":
            return self.bearer(password)
        if username == "x-bitbucket-api-token-auth":
            for user in self.directory.users.values():
                credential = self._api_token(user, password)
                if credential is not None:
                    return credential
            raise AuthFailure("bad_credentials")
        user = self.directory.users.get(username.lower())
        if user is not None:
            credential = self._app_password(user, password) or self._api_token(user, password)
            if credential is not None:
                return credential
        raise AuthFailure("bad_credentials")

    def archive(self, request):
        """The caller of an archive download: only the Authorization header counts, and x-token-auth
        userinfo (Basic) does not authenticate the web host."""
        auth = request.authorization
        if auth is None:
            if request.headers.get("Authorization"):
                raise AuthFailure("login_required")
            return ANONYMOUS
        if auth.type == "bearer":
            return self.bearer(auth.token or "")
        if auth.type == "basic" and auth.username != "x-token-auth":
            try:
                return self._web_basic(auth.username or "", auth.password or "")
            except AuthFailure:
                pass
        raise AuthFailure("login_required")
