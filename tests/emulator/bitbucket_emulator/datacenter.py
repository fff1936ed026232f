"""The Bitbucket Data Center flavour: REST 1.0, HTTP access tokens, git under /scm/, archives and OAuth 2.0.

DataCenterApp shares the Cloud application's controls, counters, faults, latency, token store and git
repositories (gitrepos.RepoStore); what differs (routes, auth, JSON shapes, errors) lives here.
"""

import dataclasses
import hmac
import typing
import urllib.parse

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map, Rule

from . import oauth
from .app import EmulatorApp
from .auth import AuthFailure
from .dcdata import OAUTH_SCOPES
from .paging import ParameterError, paginate_start_limit
from .responses import Response, dc_error_response, json_response, text_response

BASIC_CHALLENGE = 'Basic realm="Bitbucket"'
AUTH_FAILED = "Authentication failed. Please check your credentials and try again."
TOKEN_EXPIRED = "Authentication failed. The access token has expired: refresh it or authorize again."
RATE_LIMITED = "Rate limit exceeded: you have made too many requests. Wait for the time in Retry-After, then try again."
VERSION = {"version": "9.4.0", "buildNumber": "9004000", "buildDate": "1735689600000", "displayName": "Bitbucket"}
_NS = "com.atlassian.bitbucket."
NO_SUCH_PROJECT = _NS + "project.NoSuchProjectException"
NO_SUCH_REPOSITORY = _NS + "repository.NoSuchRepositoryException"
NO_SUCH_COMMIT = _NS + "commit.NoSuchCommitException"
NO_SUCH_REF = _NS + "repository.NoSuchBranchException"
BAD_REQUEST = _NS + "rest.exception.BadRequestException"
AUTH_EXCEPTION = _NS + "auth.IncorrectPasswordAuthenticationException"
EXPIRED_EXCEPTION = _NS + "auth.ExpiredAuthenticationException"
LATEST_COMMIT_METADATA = "com.atlassian.bitbucket.server.bitbucket-branch:latest-commit-metadata"
ORDERS = ("ALPHABETICAL", "MODIFICATION")
ARCHIVE_FORMATS = {"zip": ("zip", "application/zip"), "tar": ("tar", "application/x-tar"),
                   "tar.gz": ("tar.gz", "application/x-gzip"), "tgz": ("tgz", "application/x-gzip")}

_API = "/rest/api/<any('1.0', latest):version>"
_REPO = _API + "/projects/<key>/repos/<slug>"
URL_MAP = Map(
    [
        Rule(_API + "/application-properties", endpoint="api:application_properties", methods=["GET"]),
        Rule(_API + "/projects", endpoint="api:projects", methods=["GET"]),
        Rule(_API + "/projects/<key>", endpoint="api:project", methods=["GET"]),
        Rule(_API + "/projects/<key>/repos", endpoint="api:project_repos", methods=["GET"]),
        Rule(_API + "/repos", endpoint="api:repos", methods=["GET"]),
        Rule(_REPO, endpoint="api:repository", methods=["GET"]),
        Rule(_REPO + "/branches", endpoint="api:branches", methods=["GET"]),
        Rule(_REPO + "/branches/default", endpoint="api:default_branch", methods=["GET"]),
        Rule(_REPO + "/default-branch", endpoint="api:default_branch", methods=["GET"]),
        Rule(_REPO + "/tags", endpoint="api:tags", methods=["GET"]),
        Rule(_REPO + "/tags/<path:name>", endpoint="api:tag", methods=["GET"]),
        Rule(_REPO + "/commits/<path:commit_id>", endpoint="api:commit", methods=["GET"]),
        Rule(_REPO + "/archive", endpoint="api:archive", methods=["GET"]),
        Rule("/rest/oauth2/latest/token", endpoint="token"),
        Rule("/rest/oauth2/latest/authorize", endpoint="authorize", methods=["GET"]),
        Rule("/scm/<key>/<slug>.git/<path:rest>", endpoint="git", methods=["GET", "POST"]),
        Rule("/scm/<key>/<slug>/info/refs", endpoint="git", defaults={"rest": "info/refs"}, methods=["GET"]),
        Rule("/scm/<key>/<slug>/git-upload-pack", endpoint="git", defaults={"rest": "git-upload-pack"}, methods=["POST"]),
        Rule("/scm/<key>/<slug>/git-receive-pack", endpoint="git", defaults={"rest": "git-receive-pack"}, methods=["POST"]),
    ],
    strict_slashes=False,
    merge_slashes=False,
    redirect_defaults=False,
)


class DcApiError(Exception):
    """An answer in Data Center's error envelope."""

    def __init__(self, status, message, exception_name, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.exception_name = exception_name
        self.headers = headers or {}


# --- who is calling ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DcCredential:
    """An authenticated (or anonymous) caller.

    kind: anonymous, password, personal_token, project_token, repository_token or oauth.
    """

    kind: str = "anonymous"
    user: typing.Any = None
    token: typing.Any = None
    scopes: tuple = ()

    @property
    def anonymous(self):
        """True when no credentials were sent."""
        return self.kind == "anonymous"

    @property
    def login(self):
        """The X-AUSERNAME value (None for anonymous callers)."""
        if self.token is not None:
            return self.token.login
        return self.user.username if self.user is not None else None

    def can_read(self, repo):
        """Project and repository tokens read only their scope; OAuth PUBLIC_REPOS only public repositories;
        everyone else public repositories and those of projects they are a member of."""
        if self.kind == "project_token":
            return repo.project is self.token.project
        if self.kind == "repository_token":
            return repo is self.token.repository
        if self.kind == "oauth" and not set(self.scopes) & set(OAUTH_SCOPES[1:]):
            return repo.public
        return repo.public or (self.user is not None and self.user.username.lower() in repo.members)

    def can_see_project(self, project):
        """A project is visible when the caller may read it or one of its repositories."""
        if self.kind == "project_token":
            return project is self.token.project
        if self.kind == "repository_token":
            return project is self.token.repository.project
        member = self.user is not None and self.user.username.lower() in project.members
        if self.kind == "oauth" and not set(self.scopes) & set(OAUTH_SCOPES[1:]):
            member = False
        return project.public or member or any(self.can_read(repo) for repo in project.repositories)


ANONYMOUS = DcCredential()


class DcAuthenticator:
    """Bearer <any HTTP access token or OAuth access token>; Basic username:<personal token or password>."""

    def __init__(self, directory, store):
        self.directory = directory
        self.store = store

    def authenticate(self, request):
        """The caller of a REST, archive or git request; raises AuthFailure for credentials that do not work."""
        if not request.headers.get("Authorization"):
            return ANONYMOUS
        auth = request.authorization
        if auth is not None and auth.type == "bearer":
            return self.bearer(auth.token or "")
        if auth is not None and auth.type == "basic":
            return self.basic(auth.username or "", auth.password or "")
        raise AuthFailure("bad_credentials")

    def bearer(self, token):
        """An OAuth access token the emulator issued, or any HTTP access token."""
        grant = self.store.lookup(token)
        if grant is not None:
            if grant.is_expired():
                raise AuthFailure("expired_token")
            return DcCredential("oauth", grant.user, None, grant.scopes)
        found = self.directory.tokens.get(token)
        if found is None:
            raise AuthFailure("invalid_token")
        return DcCredential(found.level + "_token", found.user, found)

    def basic(self, username, password):
        """A personal token of that user, or the user's password; project and repository tokens are refused
        here, as Data Center refuses them with a username."""
        user = self.directory.users.get(username.lower())
        if user is None:
            raise AuthFailure("bad_credentials")
        found = self.directory.tokens.get(password)
        if found is not None and found.level == "personal" and found.user is user:
            return DcCredential("personal_token", user, found)
        if user.password and hmac.compare_digest(user.password.encode("utf-8"), password.encode("utf-8")):
            return DcCredential("password", user)
        raise AuthFailure("bad_credentials")


def auth_failure_response(failure):
    """The 401 for credentials that do not authenticate, in the error envelope."""
    if failure.reason == "expired_token":
        return dc_error_response(401, TOKEN_EXPIRED, EXPIRED_EXCEPTION, {"WWW-Authenticate": BASIC_CHALLENGE})
    return dc_error_response(401, AUTH_FAILED, AUTH_EXCEPTION, {"WWW-Authenticate": BASIC_CHALLENGE})


# --- JSON shapes -------------------------------------------------------------------------


class Links:
    """Absolute URLs for the host the client used."""

    def __init__(self, request):
        self.base = request.host_url.rstrip("/")
        split = urllib.parse.urlsplit(self.base)
        self.netloc = split.netloc
        self.host = split.hostname if ":" not in (split.hostname or "") else "[%s]" % split.hostname


def _millis(when):
    return int(when.timestamp() * 1000)


def _person(raw):
    name, dummy, email = raw.partition(" <")
    return {"name": name, "emailAddress": email.rstrip(">")}


def project_json(project, links):
    """A project object."""
    body = {"key": project.key, "id": project.id, "name": project.name}
    if project.description:
        body["description"] = project.description
    body.update({"public": project.public, "type": "NORMAL",
                 "links": {"self": [{"href": "%s/projects/%s" % (links.base, project.key)}]}})
    return body


def repository_json(repo, links):
    """A repository object; public is true when the repository or its project is public."""
    body = {"slug": repo.slug, "id": repo.id, "name": repo.name}
    if repo.description:
        body["description"] = repo.description
    body.update({
        "hierarchyId": repo.hierarchy_id,
        "scmId": "git",
        "state": "AVAILABLE",
        "statusMessage": "Available",
        "forkable": repo.forkable,
        "project": project_json(repo.project, links),
        "public": repo.public,
        "archived": False,
        "links": {
            "clone": [
                {"href": "https://%s/scm/%s/%s.git" % (links.netloc, repo.project.slug, repo.slug), "name": "http"},
                {"href": "ssh://git@%s:7999/%s/%s.git" % (links.host, repo.project.slug, repo.slug), "name": "ssh"},
            ],
            "self": [{"href": "%s/projects/%s/repos/%s/browse" % (links.base, repo.project.key, repo.slug)}],
        },
    })
    return body


def commit_json(commit):
    """A commit object (timestamps in milliseconds)."""
    person = _person(commit.author)
    return {
        "id": commit.hash,
        "displayId": commit.hash[:11],
        "author": dict(person),
        "authorTimestamp": _millis(commit.author_date or commit.date),
        "committer": dict(person),
        "committerTimestamp": _millis(commit.date),
        "message": commit.message.rstrip("\n"),
        "parents": [{"id": parent, "displayId": parent[:11]} for parent in commit.parents],
    }


def branch_json(repo, ref, details=False):
    """A branch object; details adds the latest commit under metadata, as Data Center's branch plugin does."""
    body = {"id": "refs/heads/" + ref.name, "displayId": ref.name, "type": "BRANCH", "latestCommit": ref.commit.hash,
            "latestChangeset": ref.commit.hash, "isDefault": ref.name == repo.mainbranch}
    if details:
        body["metadata"] = {LATEST_COMMIT_METADATA: commit_json(ref.commit)}
    return body


def tag_json(ref):
    """A tag object; hash is the tag object of an annotated tag (null for a lightweight one)."""
    return {"id": "refs/tags/" + ref.name, "displayId": ref.name, "type": "TAG", "latestCommit": ref.commit.hash,
            "latestChangeset": ref.commit.hash, "hash": ref.object_hash}


def _contains(value, wanted):
    return not wanted or wanted.lower() in value.lower()


# --- the REST API ------------------------------------------------------------------------


class DataCenterApi:
    """Handlers for /rest/api/1.0 (and latest); each returns a dict for JSON or a Response."""

    def __init__(self, directory, repos, authenticator):
        self.directory = directory
        self.repos = repos
        self.auth = authenticator

    def handle(self, request, endpoint, values):
        """Authenticate, run the endpoint and shape the answer."""
        try:
            credential = self.auth.authenticate(request)
        except AuthFailure as failure:
            return auth_failure_response(failure)
        headers = {} if credential.anonymous else {"X-AUSERNAME": credential.login}
        values.pop("version", None)
        try:
            body = getattr(self, "_" + endpoint)(request, credential, Links(request), **values)
        except ParameterError as err:
            return dc_error_response(400, str(err), BAD_REQUEST, headers)
        except DcApiError as err:
            headers.update(err.headers)
            return dc_error_response(err.status, err.message, err.exception_name, headers)
        if isinstance(body, Response):
            body.headers.update(headers)
            return body
        return json_response(body, headers=headers)

    def _page(self, request, items):
        return paginate_start_limit(request, items, self.directory.max_page_limit)

    # --- lookups ---------------------------------------------------------------------

    def _project_of(self, credential, key):
        project = self.directory.find_project(key)
        if project is None or not credential.can_see_project(project):
            raise DcApiError(404, "Project %s does not exist." % key, NO_SUCH_PROJECT)
        return project

    def _repo_of(self, credential, key, slug):
        project = self._project_of(credential, key)
        repo = project.find_repository(slug)
        if repo is None or not credential.can_read(repo):
            # The same answer for missing and unreadable, so private names do not leak.
            raise DcApiError(404, "Repository %s/%s does not exist." % (project.key, slug), NO_SUCH_REPOSITORY)
        return repo

    # --- endpoints -------------------------------------------------------------------

    def _application_properties(self, request, credential, links):
        del request, credential, links
        return dict(VERSION)

    def _projects(self, request, credential, links):
        name = request.args.get("name")
        projects = [project_json(project, links) for project in self.directory.projects.values()
                    if credential.can_see_project(project) and _contains(project.name, name)]
        return self._page(request, projects)

    def _project(self, request, credential, links, key):
        del request
        return project_json(self._project_of(credential, key), links)

    def _project_repos(self, request, credential, links, key):
        project = self._project_of(credential, key)
        return self._page(request, [repository_json(repo, links) for repo in project.repositories if credential.can_read(repo)])

    def _repos(self, request, credential, links):
        """Every repository the caller can read; name and projectname filter (case-insensitive substring)."""
        name, project_name = request.args.get("name"), request.args.get("projectname")
        visibility = request.args.get("visibility")
        if visibility not in (None, "public", "private"):
            raise ParameterError("Invalid visibility: use public or private.")
        repos = []
        for repo in self.directory.all_repositories():
            if not credential.can_read(repo) or not _contains(repo.name, name) or not _contains(repo.project.name, project_name):
                continue
            if visibility is not None and repo.public != (visibility == "public"):
                continue
            repos.append(repository_json(repo, links))
        return self._page(request, repos)

    def _repository(self, request, credential, links, key, slug):
        del request
        return repository_json(self._repo_of(credential, key, slug), links)

    def _refs(self, request, repo, kind):
        order = request.args.get("orderBy") or "ALPHABETICAL"
        if order.upper() not in ORDERS:
            raise ParameterError("Invalid orderBy %r: use ALPHABETICAL or MODIFICATION." % order)
        text = request.args.get("filterText")
        refs = [ref for ref in self.repos.refs(repo) if ref.kind == kind and _contains(ref.name, text)]
        refs.sort(key=lambda ref: ref.name)
        if order.upper() == "MODIFICATION":
            refs.sort(key=lambda ref: ref.commit.date, reverse=True)  # newest first; stable, so ties stay by name
        return refs

    def _branches(self, request, credential, links, key, slug):
        del links
        repo = self._repo_of(credential, key, slug)
        details = (request.args.get("details") or "").lower() == "true"
        return self._page(request, [branch_json(repo, ref, details) for ref in self._refs(request, repo, "branch")])

    def _default_branch(self, request, credential, links, key, slug):
        del request, links
        repo = self._repo_of(credential, key, slug)
        ref = self.repos.find_ref(repo, "branch", repo.mainbranch)
        if ref is None:
            raise DcApiError(404, "Repository %s has no default branch." % repo.full_name, NO_SUCH_REF)
        return branch_json(repo, ref)

    def _tags(self, request, credential, links, key, slug):
        del links
        repo = self._repo_of(credential, key, slug)
        return self._page(request, [tag_json(ref) for ref in self._refs(request, repo, "tag")])

    def _tag(self, request, credential, links, key, slug, name):
        del request, links
        repo = self._repo_of(credential, key, slug)
        ref = self.repos.find_ref(repo, "tag", name)
        if ref is None:
            raise DcApiError(404, "Tag %s does not exist in repository %s." % (name, repo.slug), _NS + "repository.NoSuchTagException")
        return tag_json(ref)

    def _resolve_name(self, name):
        for prefix in ("refs/heads/", "refs/tags/"):
            if name.startswith(prefix):
                return name[len(prefix):]
        return name

    def _commit(self, request, credential, links, key, slug, commit_id):
        del request, links
        repo = self._repo_of(credential, key, slug)
        commit = self.repos.show(repo, self._resolve_name(commit_id))
        if commit is None:
            raise DcApiError(404, "Commit '%s' does not exist in repository '%s'." % (commit_id, repo.slug), NO_SUCH_COMMIT)
        return commit_json(commit)

    def _archive(self, request, credential, links, key, slug):
        """Only the Authorization header authenticates (no tokens in the URL)."""
        del links
        repo = self._repo_of(credential, key, slug)
        wanted = request.args.get("format") or "zip"
        if wanted not in ARCHIVE_FORMATS:
            raise ParameterError("Invalid format %r: use zip, tar, tar.gz or tgz." % wanted)
        at = request.args.get("at") or repo.mainbranch
        commit = self.repos.resolve(repo, self._resolve_name(at))
        if commit is None:
            raise DcApiError(404, "Commit '%s' does not exist in repository '%s'." % (at, repo.slug), NO_SUCH_COMMIT)
        fmt, content_type = ARCHIVE_FORMATS[wanted]
        prefix = request.args.get("prefix") or ""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        filename = "%s-%s.%s" % (repo.slug, commit[:12], wanted)
        stream = self.repos.archive(repo, commit, fmt, prefix)
        headers = {"Content-Disposition": 'attachment; filename="%s"' % filename}
        return Response(stream, headers=headers, content_type=content_type, direct_passthrough=True)


# --- the application ------------------------------------------------------------------


class DataCenterApp(EmulatorApp):
    """The emulated Bitbucket Data Center as one WSGI application."""

    url_map = URL_MAP

    def _setup(self):
        self.store = oauth.TokenStore("current", lifetime=oauth.DC_ACCESS_TOKEN_LIFETIME)
        self.auth = DcAuthenticator(self.directory, self.store)
        self.api = DataCenterApi(self.directory, self.repos, self.auth)

    @staticmethod
    def _category(path, endpoint):
        if path == "/rest/oauth2/latest/token":
            return "token"
        if endpoint == "api:archive":
            return "archive"
        if endpoint == "git":
            return "git"
        if path.startswith("/rest/api/"):
            return "api"
        return None

    def _route(self, request, endpoint, values):
        if endpoint.startswith("api:"):
            return self.api.handle(request, endpoint[4:], values)
        if endpoint == "token":
            return oauth.dc_token_endpoint(request, self.directory, self.store)
        if endpoint == "authorize":
            return oauth.dc_authorize_endpoint(request, self.directory, self.store)
        return self._serve_git(request, **values)

    def _routing_error(self, path, error):
        if not path.startswith("/rest/"):
            return text_response("Not Found", 404) if not isinstance(error, MethodNotAllowed) else error.get_response()
        if isinstance(error, MethodNotAllowed):
            return dc_error_response(405, "This HTTP method is not allowed here.", BAD_REQUEST, {"Allow": ", ".join(error.valid_methods or [])})
        return dc_error_response(404, "There is no REST resource at %s." % path, _NS + "rest.exception.NoSuchResourceException")

    def _fault_status(self, request, status, headers):
        if status == 429:
            # Data Center's rate limiter always says when to come back.
            headers.setdefault("Retry-After", "1")
            return dc_error_response(429, RATE_LIMITED, _NS + "throttle.ThrottledException", headers)
        phrase = HTTP_STATUS_CODES.get(status, "Error")
        if request.path.startswith("/rest/"):
            return dc_error_response(status, phrase, _NS + "rest.exception.ServerException", headers)
        return text_response(phrase, status, headers)

    def _find(self, workspace, repo_slug):
        return self.directory.find_repository(workspace, repo_slug)

    def _known_tokens(self):
        # The data file's HTTP access tokens first, then every OAuth token issued, so leak checks find them all.
        return list(self.directory.tokens) + self.store.issued()

    def _serve_git(self, request, key, slug, rest):
        challenge = Response(b"", status=401, headers={"WWW-Authenticate": BASIC_CHALLENGE}, content_type="text/plain")
        try:
            credential = self.auth.authenticate(request)
        except AuthFailure:
            return challenge
        repo = self.directory.find_repository(key, slug)
        if repo is None or not credential.can_read(repo):
            # Ask anonymous callers for credentials rather than saying whether the repository exists.
            return challenge if credential.anonymous else text_response("Repository not found\n", 404)
        if rest.endswith("git-receive-pack") or request.args.get("service") == "git-receive-pack":
            if credential.anonymous:
                return challenge
            return text_response("The Bitbucket emulator is read-only: pushing is not supported.\n", 403)
        body = request.stream if request.method == "POST" else None
        status, headers, stream = self.repos.http_backend(repo, request.environ, rest, credential.login, body)
        return Response(stream, status=status, headers=headers, direct_passthrough=True)
