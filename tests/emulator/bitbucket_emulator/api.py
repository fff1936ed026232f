"""The REST API 2.0 endpoints: repositories, refs, the current user and their workspaces."""

import urllib.parse

from . import bbql
from .auth import AuthFailure
from .data import format_time
from .paging import ParameterError, apply_fields, paginate
from .responses import error_response, json_response, text_response

REPO_NOT_FOUND = (
    "The requested repository either does not exist or you do not have access. If you believe this repository exists "
    "and you have access, make sure you're authenticated."
)
TOKEN_EXPIRED = "Access token expired. Use your refresh token to obtain a new access token."
TOKEN_INVALID = "Token is invalid, expired, or not supported for this endpoint."
ACCOUNT_PASSWORD = (
    "Bitbucket Cloud recently stopped supporting account passwords for API authentication. "
    "See our community post for more details: https://atlassian.community/t5/x/x/ba-p/1948231\n"
)
SCOPES_LACKING = "Your credentials lack one or more required privilege scopes."
BASIC_CHALLENGE = 'Basic realm="Bitbucket.org HTTP"'
ROLES = ("member", "contributor", "admin", "owner")

# Fields that q= and sort= accept, with their types.
REPOSITORY_FIELDS = {
    "name": "string", "slug": "string", "full_name": "string", "description": "string", "language": "string",
    "uuid": "string", "scm": "string", "fork_policy": "string", "website": "string", "project.key": "string",
    "project.name": "string", "project.uuid": "string", "workspace.slug": "string", "owner.username": "string",
    "mainbranch.name": "string", "is_private": "bool", "has_issues": "bool", "has_wiki": "bool", "size": "number",
    "created_on": "datetime", "updated_on": "datetime",
}
REF_FIELDS = {
    "name": "string", "type": "string", "target.hash": "string", "target.message": "string",
    "target.author.raw": "string", "target.date": "datetime", "date": "datetime",
}
WORKSPACE_ACCESS_FIELDS = {"administrator": "bool", "workspace.slug": "string", "workspace.uuid": "string"}
MERGE_STRATEGIES = ["merge_commit", "squash", "fast_forward"]


class ApiError(Exception):
    """An error answer in Bitbucket's {"type": "error"} envelope."""

    def __init__(self, status, message, headers=None, detail=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.detail = detail


def auth_failure_response(failure):
    """The 401 for credentials that do not authenticate."""
    if failure.reason == "expired_token":
        return error_response(401, TOKEN_EXPIRED)
    if failure.reason == "invalid_token":
        return error_response(401, TOKEN_INVALID)
    if failure.reason == "account_password":
        # The one non-JSON 401: account passwords get a plain-text explanation.
        return text_response(ACCOUNT_PASSWORD, 401, {"WWW-Authenticate": BASIC_CHALLENGE}, content_type="text/plain")
    return error_response(401, "Invalid credentials", headers={"WWW-Authenticate": BASIC_CHALLENGE})


class Links:
    """Absolute URLs for one request's host (links echo the host the client used)."""

    def __init__(self, request):
        self.base = request.host_url.rstrip("/")
        self.netloc = urllib.parse.urlsplit(self.base).netloc
        self.host = urllib.parse.urlsplit(self.base).hostname
        self.api = self.base + "/2.0"

    def href(self, url):
        """A link object."""
        return {"href": url}


class RestApi:
    """Handlers for /2.0; each returns a werkzeug Response."""

    # endpoint -> the resource whose scope it needs
    RESOURCES = {
        "repositories": "repository", "repository": "repository", "refs": "repository", "branches": "repository",
        "branch": "repository", "tags": "repository", "tag": "repository", "user": "account", "user_workspaces": "workspace",
    }

    def __init__(self, directory, repos, authenticator):
        self.directory = directory
        self.repos = repos
        self.auth = authenticator

    def handle(self, request, endpoint, values):
        """Authenticate, check scopes, run the endpoint and shape the answer."""
        try:
            credential = self.auth.api(request)
        except AuthFailure as failure:
            return auth_failure_response(failure)
        resource = self.RESOURCES[endpoint]
        headers = {"X-Accepted-OAuth-Scopes": credential.required_scope(resource)}
        if not credential.anonymous:
            headers["X-OAuth-Scopes"] = ", ".join(credential.scopes)
            headers["X-Credential-Type"] = credential.header_type
        try:
            if not credential.has_scope(resource):
                needed = credential.required_scope(resource)
                # Bitbucket's exact wording; the scopes are named in detail only.
                raise ApiError(403, SCOPES_LACKING, detail={"required": [needed], "granted": list(credential.scopes)})
            body = getattr(self, "_" + endpoint)(request, credential, Links(request), **values)
            body = apply_fields(body, request.args.get("fields"))
        except (ParameterError, bbql.QueryError) as err:
            return error_response(400, str(err), headers)
        except ApiError as err:
            headers.update(err.headers)
            return error_response(err.status, err.message, headers, err.detail)
        return json_response(body, headers=headers)

    # --- JSON shapes -------------------------------------------------------------------

    def _user_summary(self, user, links):
        return {
            "display_name": user.display_name,
            "links": {
                "self": links.href("%s/users/%s" % (links.api, urllib.parse.quote(user.uuid))),
                "avatar": links.href("%s/account/%s/avatar/" % (links.base, user.username)),
                "html": links.href("%s/%s/" % (links.base, urllib.parse.quote(user.uuid))),
            },
            "type": "user",
            "uuid": user.uuid,
            "account_id": user.account_id,
            "nickname": user.username,
        }

    def _author(self, raw, links):
        author = {"type": "author", "raw": raw}
        email = raw[raw.rfind("<") + 1:raw.rfind(">")] if "<" in raw else ""
        user = self.directory.users_by_email.get(email.lower())
        if user is not None:
            author["user"] = self._user_summary(user, links)
        return author

    def _workspace_links(self, workspace, links):
        return {
            "avatar": links.href("%s/workspaces/%s/avatar/?ts=0" % (links.base, workspace.slug)),
            "html": links.href("%s/%s/" % (links.base, workspace.slug)),
            "self": links.href("%s/workspaces/%s" % (links.api, workspace.slug)),
        }

    def repository_json(self, repo, credential, links):
        """The full repository object."""
        workspace = repo.workspace
        api = "%s/repositories/%s" % (links.api, repo.full_name)
        html_url = "%s/%s" % (links.base, repo.full_name)
        # The https clone link names the caller (a workspace token's bot user); anonymous: no userinfo.
        userinfo = credential.login + "@" if credential.login else ""
        return {
            "type": "repository",
            "full_name": repo.full_name,
            "links": {
                "self": links.href(api),
                "html": links.href(html_url),
                "avatar": links.href("%s/avatar/32/" % html_url),
                "pullrequests": links.href(api + "/pullrequests"),
                "commits": links.href(api + "/commits"),
                "forks": links.href(api + "/forks"),
                "watchers": links.href(api + "/watchers"),
                "branches": links.href(api + "/refs/branches"),
                "tags": links.href(api + "/refs/tags"),
                "downloads": links.href(api + "/downloads"),
                "source": links.href(api + "/src"),
                "clone": [
                    {"name": "https", "href": "https://%s%s/%s.git" % (userinfo, links.netloc, repo.full_name)},
                    {"name": "ssh", "href": "git@%s:%s.git" % (links.host, repo.full_name)},
                ],
                "hooks": links.href(api + "/hooks"),
            },
            "name": repo.name,
            "slug": repo.slug,
            "description": repo.description,
            "scm": "git",
            "website": repo.website,
            "owner": {
                "display_name": workspace.name,
                "links": self._workspace_links(workspace, links),
                "type": "team",
                "uuid": workspace.uuid,
                "username": workspace.slug,
            },
            "workspace": {
                "type": "workspace",
                "uuid": workspace.uuid,
                "name": workspace.name,
                "slug": workspace.slug,
                "links": self._workspace_links(workspace, links),
            },
            "is_private": repo.is_private,
            "project": {
                "type": "project",
                "key": repo.project.key,
                "uuid": repo.project.uuid,
                "name": repo.project.name,
                "links": {
                    "self": links.href("%s/workspaces/%s/projects/%s" % (links.api, workspace.slug, repo.project.key)),
                    "html": links.href("%s/%s/workspace/projects/%s" % (links.base, workspace.slug, repo.project.key)),
                    "avatar": links.href("%s/account/user/%s/projects/%s/avatar/32" % (links.base, workspace.slug, repo.project.key)),
                },
            },
            "fork_policy": repo.fork_policy,
            "created_on": format_time(repo.created_on),
            "updated_on": format_time(repo.updated_on),
            "size": repo.size,
            "language": repo.language,
            "uuid": repo.uuid,
            "mainbranch": {"type": "branch", "name": repo.mainbranch},
            "override_settings": {"default_merge_strategy": True, "branching_model": True},
            "parent": None,
            "has_issues": repo.has_issues,
            "has_wiki": repo.has_wiki,
        }

    def _repository_summary(self, repo, links):
        api = "%s/repositories/%s" % (links.api, repo.full_name)
        return {
            "type": "repository",
            "full_name": repo.full_name,
            "links": {"self": links.href(api), "html": links.href("%s/%s" % (links.base, repo.full_name))},
            "name": repo.name,
            "uuid": repo.uuid,
        }

    def _commit_json(self, repo, commit, links):
        api = "%s/repositories/%s" % (links.api, repo.full_name)
        return {
            "type": "commit",
            "hash": commit.hash,
            "date": format_time(commit.date),
            "author": self._author(commit.author, links),
            "message": commit.message,
            "links": {
                "self": links.href("%s/commit/%s" % (api, commit.hash)),
                "html": links.href("%s/%s/commits/%s" % (links.base, repo.full_name, commit.hash)),
            },
            "parents": [
                {"hash": parent, "type": "commit", "links": {"self": links.href("%s/commit/%s" % (api, parent))}}
                for parent in commit.parents
            ],
            "repository": self._repository_summary(repo, links),
        }

    def ref_json(self, repo, ref, links):
        """A branch or tag object."""
        api = "%s/repositories/%s" % (links.api, repo.full_name)
        quoted = urllib.parse.quote(ref.name, safe="")
        collection = "branches" if ref.kind == "branch" else "tags"
        body = {
            "name": ref.name,
            "target": self._commit_json(repo, ref.commit, links),
            "links": {
                "self": links.href("%s/refs/%s/%s" % (api, collection, quoted)),
                "commits": links.href("%s/commits/%s" % (api, quoted)),
                "html": links.href("%s/%s/%s/%s" % (links.base, repo.full_name, "branch" if ref.kind == "branch" else "commits/tag", quoted)),
            },
            "type": ref.kind,
        }
        if ref.kind == "branch":
            body["merge_strategies"] = list(MERGE_STRATEGIES)
            body["default_merge_strategy"] = MERGE_STRATEGIES[0]
        else:
            body["message"] = ref.tag_message
            body["date"] = format_time(ref.tag_date) if ref.tag_date else None
            body["tagger"] = self._author(ref.tagger, links) if ref.tagger else None
        return body

    # --- lookups -------------------------------------------------------------------------

    def _workspace(self, ident):
        workspace = self.directory.find_workspace(ident)
        if workspace is None:
            raise ApiError(404, "No workspace with identifier '%s'." % ident)
        return workspace

    def _find_repository(self, credential, workspace, repo_slug):
        if workspace in ("{}", "") and repo_slug.startswith("{"):
            repo = self.directory.find_repository_by_uuid(repo_slug)
        else:
            found = self.directory.find_workspace(workspace)
            repo = found.find_repository(repo_slug) if found is not None else None
        if repo is None or not credential.can_read(repo):
            # Same answer for missing and inaccessible, so private names do not leak.
            raise ApiError(404, REPO_NOT_FOUND, {"Cache-Control": "max-age=900"})
        return repo

    # --- endpoints -----------------------------------------------------------------------

    def _repositories(self, request, credential, links, workspace):
        found = self._workspace(workspace)
        role = request.args.get("role")
        if role is not None and role not in ROLES:
            raise ApiError(400, "Invalid role: '%s'. Use one of: %s." % (role, ", ".join(ROLES)))
        matches = bbql.compile_query(request.args.get("q"), REPOSITORY_FIELDS)
        objects = []
        for repo in found.repositories:
            if not credential.can_read(repo) or (role and role not in credential.roles(repo)):
                continue
            obj = self.repository_json(repo, credential, links)
            if matches(obj):
                objects.append(obj)
        objects = bbql.sort_objects(objects, request.args.get("sort"), REPOSITORY_FIELDS)
        return paginate(request, objects)

    def _repository(self, request, credential, links, workspace, repo_slug):
        del request  # the same signature as every endpoint
        return self.repository_json(self._find_repository(credential, workspace, repo_slug), credential, links)

    def _ref_list(self, request, credential, links, workspace, repo_slug, kinds):
        repo = self._find_repository(credential, workspace, repo_slug)
        matches = bbql.compile_query(request.args.get("q"), REF_FIELDS)
        objects = [self.ref_json(repo, ref, links) for ref in self.repos.refs(repo) if ref.kind in kinds]
        objects = [obj for obj in objects if matches(obj)]
        objects = bbql.sort_objects(objects, request.args.get("sort") or "name", REF_FIELDS, natural=("name",))
        return paginate(request, objects)

    def _refs(self, request, credential, links, workspace, repo_slug):
        return self._ref_list(request, credential, links, workspace, repo_slug, ("branch", "tag"))

    def _branches(self, request, credential, links, workspace, repo_slug):
        return self._ref_list(request, credential, links, workspace, repo_slug, ("branch",))

    def _tags(self, request, credential, links, workspace, repo_slug):
        return self._ref_list(request, credential, links, workspace, repo_slug, ("tag",))

    def _one_ref(self, credential, links, workspace, repo_slug, kind, name):
        repo = self._find_repository(credential, workspace, repo_slug)
        ref = self.repos.find_ref(repo, kind, name)
        if ref is None:
            raise ApiError(404, '%s "%s" does not exist.' % ("Branch" if kind == "branch" else "Tag", name))
        return self.ref_json(repo, ref, links)

    def _branch(self, request, credential, links, workspace, repo_slug, name):
        del request
        return self._one_ref(credential, links, workspace, repo_slug, "branch", name)

    def _tag(self, request, credential, links, workspace, repo_slug, name):
        del request
        return self._one_ref(credential, links, workspace, repo_slug, "tag", name)

    def _user(self, request, credential, links):
        del request
        user = self._require_user(credential)
        body = self._user_summary(user, links)
        body["links"].update({
            "repositories": links.href("%s/repositories/%s" % (links.api, urllib.parse.quote(user.uuid))),
            "snippets": links.href("%s/snippets/%s" % (links.api, urllib.parse.quote(user.uuid))),
            "hooks": links.href("%s/workspaces/%s/hooks" % (links.api, urllib.parse.quote(user.uuid))),
        })
        body.update({
            "username": user.username,
            "has_2fa_enabled": None,
            "is_staff": False,
            "account_status": "active",
            "created_on": format_time(user.created_on),
            "location": None,
        })
        return body

    def _user_workspaces(self, request, credential, links):
        user = self._require_user(credential)
        administrator = request.args.get("administrator")
        if administrator not in (None, "true", "false"):
            raise ApiError(400, "Invalid administrator: use true or false.")
        objects = []
        for workspace in self.directory.workspaces.values():
            name = user.username.lower()
            if name not in workspace.members:
                continue
            is_admin = name in workspace.admins
            if administrator is not None and is_admin != (administrator == "true"):
                continue
            objects.append({
                "type": "workspace_access",
                "administrator": is_admin,
                "workspace": {
                    "type": "workspace_base",
                    "slug": workspace.slug,
                    "uuid": workspace.uuid,
                    "links": self._workspace_links(workspace, links),
                },
            })
        matches = bbql.compile_query(request.args.get("q"), WORKSPACE_ACCESS_FIELDS)
        objects = [obj for obj in objects if matches(obj)]
        sort = request.args.get("sort")
        if sort and sort.lstrip("-") not in ("slug", "workspace.slug"):
            raise ApiError(400, "Invalid sort field: %s (only slug is supported)" % sort.lstrip("-"))
        if sort:
            objects = bbql.sort_objects(objects, "-workspace.slug" if sort.startswith("-") else "workspace.slug", WORKSPACE_ACCESS_FIELDS)
        return paginate(request, objects, default_pagelen=25)

    def _require_user(self, credential):
        if credential.anonymous:
            raise ApiError(401, "Authentication required", {"WWW-Authenticate": BASIC_CHALLENGE})
        if credential.user is None:
            # Workspace access tokens act for no user.
            raise ApiError(401, TOKEN_INVALID)
        return credential.user
