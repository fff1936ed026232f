"""The WSGI application: routing, request counting, faults and latency, git smart HTTP and archives."""

import base64
import json
import socket
import threading
import time
import urllib.parse

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request

from . import oauth
from .api import BASIC_CHALLENGE, RestApi, auth_failure_response
from .responses import Response, error_response, html_response, json_response, text_response
from .auth import AuthFailure, Authenticator
from .controls import ControlError, Counters, Faults, parse_commit, parse_fault
from .gitrepos import RepoStore

RATE_LIMITED = "Rate limit for this resource has been exceeded"
API_NOT_FOUND_DETAIL = (
    "There is no API hosted at this URL.\n\nFor information about our API's, please refer to the documentation at: "
    "https://developer.atlassian.com/bitbucket/api/2/reference/"
)
_REPO = "/<workspace>/<repo_slug>"
_API_REPO = "/2.0/repositories/<workspace>/<repo_slug>"
URL_MAP = Map(
    [
        Rule("/site/oauth2/access_token", endpoint="token"),
        Rule("/site/oauth2/authorize", endpoint="authorize", methods=["GET"]),
        Rule("/2.0/user", endpoint="api:user", methods=["GET"]),
        Rule("/2.0/user/workspaces", endpoint="api:user_workspaces", methods=["GET"]),
        Rule("/2.0/repositories/<workspace>", endpoint="api:repositories", methods=["GET"]),
        Rule(_API_REPO, endpoint="api:repository", methods=["GET"]),
        Rule(_API_REPO + "/refs", endpoint="api:refs", methods=["GET"]),
        Rule(_API_REPO + "/refs/branches", endpoint="api:branches", methods=["GET"]),
        Rule(_API_REPO + "/refs/branches/<path:name>", endpoint="api:branch", methods=["GET"]),
        Rule(_API_REPO + "/refs/tags", endpoint="api:tags", methods=["GET"]),
        Rule(_API_REPO + "/refs/tags/<path:name>", endpoint="api:tag", methods=["GET"]),
        # git smart HTTP, with or without ".git" as Bitbucket allows.
        Rule(_REPO + ".git/<path:rest>", endpoint="git", methods=["GET", "POST"]),
        Rule(_REPO + "/info/refs", endpoint="git", defaults={"rest": "info/refs"}, methods=["GET"]),
        Rule(_REPO + "/git-upload-pack", endpoint="git", defaults={"rest": "git-upload-pack"}, methods=["POST"]),
        Rule(_REPO + "/git-receive-pack", endpoint="git", defaults={"rest": "git-receive-pack"}, methods=["POST"]),
        Rule(_REPO + "/get/<path:name>", endpoint="archive", methods=["GET"]),
        Rule("/account/signin/", endpoint="signin", methods=["GET"]),
    ],
    strict_slashes=False,
    merge_slashes=False,
    redirect_defaults=False,
)
ARCHIVE_FORMATS = ((".tar.gz", "tar.gz", "application/x-gzip"), (".zip", "zip", "application/zip"))


def _archive_format(name):
    """Split "main.tar.gz" into (ref, suffix, git archive format, content type); None if unsupported."""
    for suffix, fmt, content_type in ARCHIVE_FORMATS:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], suffix, fmt, content_type
    return None


def _category(path, endpoint):
    """Which stats counter a request belongs to (None: not counted)."""
    if path == "/site/oauth2/access_token":
        return "token"
    if path == "/2.0" or path.startswith("/2.0/"):
        return "api"
    if endpoint in ("git", "archive"):
        return endpoint
    return None


class EmulatorApp:
    """The whole emulated Bitbucket Cloud as one WSGI application.

    The Data Center flavour (datacenter.DataCenterApp) subclasses it: the controls, counters, faults
    and latency are shared; url_map, _category, _route, _routing_error, _fault_status, _find and
    _known_tokens are the flavour's own.
    """

    url_map = URL_MAP

    def __init__(self, directory, state_dir, mode="current", latency_ms=0):
        self.directory = directory
        self.mode = mode
        self.repos = RepoStore(state_dir, directory)
        self.counters = Counters()
        self.faults = Faults()
        self._latency_lock = threading.Lock()
        self._latency_ms = latency_ms
        self._setup()

    def _setup(self):
        """The flavour's token store, authenticator and REST API."""
        self.store = oauth.TokenStore(self.mode)
        self.auth = Authenticator(self.directory, self.store, self.mode)
        self.api = RestApi(self.directory, self.repos, self.auth)

    def close(self):
        """Release files held by the application."""
        self.repos.close()

    def __call__(self, environ, start_response):
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request):
        """Answer one request."""
        path = request.path
        if path.startswith("/_emulator/"):
            return self._control(request, path[len("/_emulator/"):].strip("/"))
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except HTTPException as err:
            endpoint, values = err, {}
        category = self._category(path, endpoint)
        if category is not None:
            self.counters.count(category)
        with self._latency_lock:
            latency = self._latency_ms
        if latency:
            time.sleep(latency / 1000.0)
        fault = self.faults.take(path)
        if fault is not None:
            response = self._apply_fault(request, fault)
            if response is not None:
                return response
        if isinstance(endpoint, HTTPException):
            return self._routing_error(path, endpoint)
        return self._route(request, endpoint, values)

    @staticmethod
    def _category(path, endpoint):
        return _category(path, endpoint)

    def _route(self, request, endpoint, values):
        """Answer a request whose route matched."""
        if endpoint.startswith("api:"):
            return self.api.handle(request, endpoint[4:], values)
        if endpoint == "token":
            return oauth.token_endpoint(request, self.directory, self.store)
        if endpoint == "authorize":
            return oauth.authorize_endpoint(request, self.directory, self.store)
        if endpoint == "git":
            return self._git(request, **values)
        if endpoint == "archive":
            return self._archive(request, **values)
        return html_response("Log in to Bitbucket")  # /account/signin/: where archive downloads send the unauthenticated

    def _routing_error(self, path, error):
        is_api = path == "/2.0" or path.startswith("/2.0/")
        if isinstance(error, MethodNotAllowed):
            headers = {"Allow": ", ".join(error.valid_methods or [])}
            if is_api:
                return error_response(405, "Method not allowed", headers)
            return text_response("Method Not Allowed", 405, headers)
        if is_api:
            return error_response(404, "Resource not found", detail=API_NOT_FOUND_DETAIL)
        if isinstance(error, NotFound):
            return text_response("Not Found", 404)
        return error.get_response()

    # --- faults and controls -------------------------------------------------------------

    def _apply_fault(self, request, fault):
        """The fault's answer, or None to carry on normally after a delay."""
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000.0)
            return None
        if fault.drop:
            # Close the connection under werkzeug: the client sees no response at all.
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return Response(b"", status=500)
        status = fault.status
        headers = dict(fault.headers or {})
        if fault.body is not None:
            return text_response(fault.body, status, headers)
        if fault.body_base64 is not None:
            return Response(base64.b64decode(fault.body_base64), status=status, headers=headers,
                            content_type=headers.pop("Content-Type", "application/octet-stream"))
        return self._fault_status(request, status, headers)

    def _fault_status(self, request, status, headers):
        """The answer for a fault that gives only a status."""
        if status == 429:
            # Bitbucket Cloud's 429 is plain text with no Retry-After (unless the test adds one).
            return text_response(RATE_LIMITED, status, headers, content_type="text/plain")
        phrase = HTTP_STATUS_CODES.get(status, "Error")
        if request.path.startswith("/2.0"):
            return error_response(status, phrase, headers)
        return text_response(phrase, status, headers)

    def _control(self, request, name):
        methods = {"stats": "GET", "reset": "POST", "expire": "POST", "faults": "POST", "latency": "POST", "commit": "POST"}
        if name not in methods:
            return json_response({"error": "unknown control %r" % name}, 404)
        if request.method != methods[name] and not (name == "faults" and request.method == "GET"):
            return json_response({"error": "use %s" % methods[name]}, 405, {"Allow": methods[name]})
        payload = {}
        if request.method == "POST" and request.get_data():
            try:
                payload = json.loads(request.get_data())
            except ValueError:
                return json_response({"error": "the body must be JSON"}, 400)
        try:
            return json_response(getattr(self, "_control_" + name)(payload if payload is not None else {}))
        except ControlError as err:
            return json_response({"error": str(err)}, 400)

    def _control_stats(self, _payload):
        return {"requests": self.counters.snapshot(), "tokens": self._known_tokens()}

    def _known_tokens(self):
        """The secrets tests look for in output: on Cloud, every token the emulator issued."""
        return self.store.issued()

    def _control_reset(self, _payload):
        self.counters.reset()
        return self._control_stats(None)

    def _control_expire(self, _payload):
        return {"expired": self.store.expire_all()}

    def _control_faults(self, payload):
        if payload == {}:
            return {"faults": self.faults.pending()}
        if isinstance(payload, dict) and payload.get("clear") is True:
            self.faults.clear()
        else:
            self.faults.add(parse_fault(payload))
        return {"faults": self.faults.pending()}

    def _control_latency(self, payload):
        ms = payload.get("ms") if isinstance(payload, dict) else None
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= 600_000:
            raise ControlError("ms must be a number of milliseconds from 0 to 600000")
        with self._latency_lock:
            self._latency_ms = ms
        return {"latency_ms": ms}

    def _control_commit(self, payload):
        wanted = parse_commit(payload)
        repo = self._find(wanted.workspace, wanted.slug)
        if repo is None:
            raise ControlError("unknown repository %s/%s" % (wanted.workspace, wanted.slug))
        branch = wanted.branch or repo.mainbranch
        commit = self.repos.commit(repo, branch, wanted.files, wanted.message)
        return {"commit": commit, "repository": repo.full_name, "branch": branch}

    # --- git and archives ----------------------------------------------------------------

    def _find(self, workspace, repo_slug):
        found = self.directory.find_workspace(workspace)
        return found.find_repository(repo_slug) if found is not None else None

    def _git(self, request, workspace, repo_slug, rest):
        challenge = Response(b"", status=401, headers={"WWW-Authenticate": BASIC_CHALLENGE}, content_type="text/plain")
        try:
            credential = self.auth.git(request)
        except AuthFailure:
            return challenge
        repo = self._find(workspace, repo_slug)
        if repo is None or not credential.can_read(repo):
            # Ask anonymous callers for credentials rather than saying whether the repository exists.
            return challenge if credential.anonymous else text_response("Repository not found\n", 404)
        if repo.is_private and not credential.has_scope("repository"):
            return text_response("Your credentials lack the %s scope.\n" % credential.required_scope("repository"), 403)
        if rest.endswith("git-receive-pack") or request.args.get("service") == "git-receive-pack":
            if credential.anonymous:
                return challenge
            return text_response("The Bitbucket emulator is read-only: pushing is not supported.\n", 403)
        body = request.stream if request.method == "POST" else None
        status, headers, stream = self.repos.http_backend(repo, request.environ, rest, credential.login, body)
        return Response(stream, status=status, headers=headers, direct_passthrough=True)

    def _archive(self, request, workspace, repo_slug, name):
        if "access_token" in request.args:
            # Measured on bitbucket.org in 2026: the query parameter is refused outright.
            return html_response("403 Forbidden", status=403)
        try:
            credential = self.auth.archive(request)
        except AuthFailure as failure:
            if failure.reason in ("expired_token", "invalid_token"):
                return auth_failure_response(failure)
            return self._login_redirect(request)
        repo = self._find(workspace, repo_slug)
        if repo is None or not credential.can_read(repo):
            return self._login_redirect(request) if credential.anonymous else html_response("404 Not Found", status=404)
        if not credential.anonymous and repo.is_private and not credential.has_scope("repository"):
            return html_response("403 Forbidden", status=403)
        wanted = _archive_format(name)
        commit = self.repos.resolve(repo, wanted[0]) if wanted else None
        if commit is None:
            return html_response("404 Not Found", status=404)
        _ref, suffix, fmt, content_type = wanted
        base = "%s-%s-%s" % (repo.workspace.slug, repo.slug, commit[:12])
        stream = self.repos.archive(repo, commit, fmt, base + "/")
        headers = {"Content-Disposition": 'attachment; filename="%s%s"' % (base, suffix)}
        return Response(stream, headers=headers, content_type=content_type, direct_passthrough=True)

    def _login_redirect(self, request):
        location = "%s/account/signin/?next=%s" % (request.host_url.rstrip("/"), urllib.parse.quote(request.path))
        return Response(b"", status=302, headers={"Location": location})
