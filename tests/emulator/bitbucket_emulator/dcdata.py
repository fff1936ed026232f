"""The Data Center flavour's data file: users, projects, repositories, HTTP access tokens, OAuth applications.

Validation reuses the Cloud loader's helpers, so both files fail the same way (one line naming the place).
"""

import dataclasses
import datetime
import hashlib
import pathlib
import random
import re

from .data import (
    _GENERATED_WINDOW, _SLUG_RE, Consumer, DataError, _bool, _check_keys, _datetime, _int, _list, _ref_names, _slug,
    _string, _strings, read_yaml,
)

DATACENTER_DATA = pathlib.Path(__file__).resolve().parent / "data" / "datacenter.yml"

# HTTP access token permissions (Data Center offers project and repository levels); all of them can read.
PERMISSIONS = ("REPO_READ", "REPO_WRITE", "REPO_ADMIN", "PROJECT_READ", "PROJECT_WRITE", "PROJECT_ADMIN")
# OAuth 2.0 scopes, weakest first; each implies the ones before it.
OAUTH_SCOPES = ("PUBLIC_REPOS", "REPO_READ", "REPO_WRITE", "REPO_ADMIN", "PROJECT_ADMIN")
DEFAULT_MAX_PAGE_LIMIT = 1000
_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclasses.dataclass
class DcUser:
    """A Data Center user."""

    username: str
    display_name: str
    email: str
    password: str
    id: int

    @property
    def slug(self):
        """The URL form of the username."""
        return self.username.lower()


@dataclasses.dataclass
class HttpToken:
    """An HTTP access token: personal (acts as its user), project or repository (acts for its scope only)."""

    token: str
    permission: str
    name: str
    level: str  # personal, project or repository
    user: DcUser = None
    project: "DcProject" = None
    repository: "DcRepository" = None

    @property
    def login(self):
        """The username Data Center shows for the caller (X-AUSERNAME)."""
        if self.user is not None:
            return self.user.username
        # Project and repository tokens act as a service user of their own; the name is ours.
        where = self.project.key if self.repository is None else self.repository.full_name
        return "%s-token-%s" % (self.level, hashlib.sha256(("%s:%s" % (where, self.name)).encode()).hexdigest()[:8])


@dataclasses.dataclass
class DcProject:
    """A project: a key, a visibility, members who can read it, and repositories."""

    key: str
    name: str
    description: str
    public: bool
    members: tuple
    id: int
    repositories: list
    by_slug: dict

    @property
    def slug(self):
        """The lowercase key used in /scm/ paths."""
        return self.key.lower()

    def find_repository(self, slug):
        """The repository called slug (any case), or None."""
        return self.by_slug.get(slug.lower())


@dataclasses.dataclass
class DcRepository:
    """A repository; its git data lives in gitrepos.RepoStore like a Cloud one."""

    project: DcProject
    slug: str
    name: str
    description: str
    repo_public: bool
    forkable: bool
    branches: tuple
    tags: tuple
    created_on: datetime.datetime
    updated_on: datetime.datetime
    id: int
    language: str = ""

    @property
    def full_name(self):
        """KEY/slug."""
        return "%s/%s" % (self.project.key, self.slug)

    @property
    def public(self):
        """Public itself or through its project."""
        return self.repo_public or self.project.public

    @property
    def mainbranch(self):
        """The default branch: the first in the data."""
        return self.branches[0]

    @property
    def git_owner(self):
        """The directory of its bare repository in gitrepos.RepoStore."""
        return self.project.slug

    @property
    def members(self):
        """Usernames that can read it."""
        return self.project.members

    @property
    def hierarchy_id(self):
        """A stable 20-hex-digit id, as Data Center shows for forks' common ancestry."""
        return hashlib.sha256(self.full_name.lower().encode()).hexdigest()[:20]


@dataclasses.dataclass
class DcDirectory:
    """Everything the Data Center flavour knows."""

    users: dict
    projects: dict
    tokens: dict
    applications: dict
    max_page_limit: int

    def find_project(self, key):
        """The project with this key (any case), or None."""
        return self.projects.get((key or "").upper())

    def find_repository(self, key, slug):
        """The repository KEY/slug, or None."""
        project = self.find_project(key)
        return project.find_repository(slug) if project is not None else None

    def all_repositories(self):
        """Every repository, in data order."""
        for project in self.projects.values():
            yield from project.repositories


def load(path=None):
    """Read and validate a Data Center data file (the bundled one when path is None)."""
    return build(read_yaml(path if path is not None else DATACENTER_DATA))


def build(raw):
    """Validate parsed YAML and return a DcDirectory."""
    if raw is None:
        raw = {}
    _check_keys(raw, "data file", ("users", "projects", "oauth_applications", "max_page_limit"))
    directory = DcDirectory({}, {}, {}, {}, _int(raw.get("max_page_limit"), "max_page_limit", DEFAULT_MAX_PAGE_LIMIT, 1, 100_000))
    for index, item in enumerate(_list(raw.get("users"), "users")):
        _user(directory, item, "users[%d]" % index, index)
    for index, item in enumerate(_list(raw.get("projects"), "projects")):
        _project(directory, item, "projects[%d]" % index, index)
    for index, item in enumerate(_list(raw.get("oauth_applications"), "oauth_applications")):
        _application(directory, item, "oauth_applications[%d]" % index)
    return directory


def _tokens(directory, value, where, level, **owner):
    for index, item in enumerate(_list(value, where)):
        here = "%s[%d]" % (where, index)
        _check_keys(item, here, ("token", "permission", "name"), ("token", "permission"))
        token = _string(item["token"], here + ".token", required=True)
        permission = _string(item["permission"], here + ".permission", required=True)
        if permission not in PERMISSIONS:
            raise DataError("%s.permission: must be one of %s" % (here, ", ".join(PERMISSIONS)))
        if token in directory.tokens:
            raise DataError("%s.token: the same token is given twice" % here)
        name = _string(item.get("name"), here + ".name", "%s-token-%d" % (level, index + 1))
        directory.tokens[token] = HttpToken(token, permission, name, level, **owner)


def _user(directory, item, where, index):
    _check_keys(item, where, ("username", "display_name", "email", "password", "tokens"), ("username",))
    username = _slug(item["username"], where + ".username")
    if username.lower() in directory.users:
        raise DataError("%s: duplicate username %r" % (where, username))
    user = DcUser(
        username=username,
        display_name=_string(item.get("display_name"), where + ".display_name", username),
        email=_string(item.get("email"), where + ".email", ""),
        password=_string(item.get("password"), where + ".password", ""),
        id=index + 1,
    )
    directory.users[username.lower()] = user
    _tokens(directory, item.get("tokens"), where + ".tokens", "personal", user=user)


def _project(directory, item, where, index):
    allowed = ("key", "name", "description", "public", "members", "tokens", "repositories", "generate_repositories")
    _check_keys(item, where, allowed, ("key",))
    key = _string(item["key"], where + ".key", required=True)
    if not _KEY_RE.fullmatch(key):
        raise DataError("%s.key: %r is not a project key (a letter, then letters, digits or _)" % (where, key))
    key = key.upper()
    if key in directory.projects:
        raise DataError("%s: duplicate project key %r" % (where, key))
    members = _strings(item.get("members"), where + ".members")
    for name in members:
        if name.lower() not in directory.users:
            raise DataError("%s.members: unknown user %r" % (where, name))
    project = DcProject(
        key=key,
        name=_string(item.get("name"), where + ".name", key),
        description=_string(item.get("description"), where + ".description", ""),
        public=_bool(item.get("public"), where + ".public", False),
        members=tuple(name.lower() for name in members),
        id=index + 1,
        repositories=[],
        by_slug={},
    )
    directory.projects[key] = project
    _tokens(directory, item.get("tokens"), where + ".tokens", "project", project=project)
    for number, repo in enumerate(_list(item.get("repositories"), where + ".repositories")):
        _repository(directory, project, repo, "%s.repositories[%d]" % (where, number))
    if item.get("generate_repositories") is not None:
        _generate(directory, project, item["generate_repositories"], where + ".generate_repositories")


def _next_id(directory):
    return sum(len(project.repositories) for project in directory.projects.values()) + 1


def _add(project, repo, where):
    if repo.slug.lower() in project.by_slug:
        raise DataError("%s: duplicate repository slug %r in project %s" % (where, repo.slug, project.key))
    project.repositories.append(repo)
    project.by_slug[repo.slug.lower()] = repo


def _random_time(rng):
    start, end = _GENERATED_WINDOW
    return start + datetime.timedelta(seconds=rng.randint(0, int((end - start).total_seconds())))


def _repository(directory, project, item, where):
    allowed = ("slug", "name", "description", "public", "forkable", "branches", "tags", "tokens", "created_on", "updated_on")
    _check_keys(item, where, allowed, ("slug",))
    slug = _slug(item["slug"], where + ".slug")
    rng = random.Random("%s/%s" % (project.key, slug.lower()))
    updated_on = _datetime(item.get("updated_on"), where + ".updated_on", _random_time(rng))
    created_on = _datetime(item.get("created_on"), where + ".created_on", updated_on - datetime.timedelta(days=rng.randint(30, 900)))
    if created_on > updated_on:
        raise DataError("%s: created_on is after updated_on" % where)
    branches = _ref_names(item.get("branches", ["main"]), where + ".branches")
    if not branches:
        raise DataError("%s.branches: at least one branch is required (the first is the default branch)" % where)
    repo = DcRepository(
        project=project,
        slug=slug,
        name=_string(item.get("name"), where + ".name", slug),
        description=_string(item.get("description"), where + ".description", ""),
        repo_public=_bool(item.get("public"), where + ".public", False),
        forkable=_bool(item.get("forkable"), where + ".forkable", True),
        branches=branches,
        tags=_ref_names(item.get("tags"), where + ".tags"),
        created_on=created_on,
        updated_on=updated_on,
        id=_next_id(directory),
    )
    _add(project, repo, where)
    _tokens(directory, item.get("tokens"), where + ".tokens", "repository", project=project, repository=repo)


def _generate(directory, project, spec, where):
    """Add count private repositories with one main branch (for paging and scale)."""
    _check_keys(spec, where, ("count", "prefix"), ("count",))
    count = _int(spec.get("count"), where + ".count", 0, 0, 10_000)
    prefix = _string(spec.get("prefix"), where + ".prefix", "repo-")
    width = max(3, len(str(count)))
    for number in range(1, count + 1):
        slug = "%s%0*d" % (prefix, width, number)
        if not _SLUG_RE.fullmatch(slug):
            raise DataError("%s.prefix: %r does not make valid slugs" % (where, prefix))
        rng = random.Random("%s/%s" % (project.key, slug))
        updated_on = _random_time(rng)
        repo = DcRepository(
            project=project, slug=slug, name=slug, description="Generated service %s" % slug, repo_public=False,
            forkable=True, branches=("main",), tags=(), created_on=updated_on - datetime.timedelta(days=rng.randint(1, 1500)),
            updated_on=updated_on, id=_next_id(directory),
        )
        _add(project, repo, where)


def _application(directory, item, where):
    """An OAuth 2.0 incoming application link; kept as a Cloud Consumer (without owner) so the token store fits both."""
    _check_keys(item, where, ("client_id", "client_secret", "redirect_uri", "scopes", "name"), ("client_id", "client_secret", "redirect_uri"))
    client_id = _string(item["client_id"], where + ".client_id", required=True)
    if client_id in directory.applications:
        raise DataError("%s: duplicate client_id %r" % (where, client_id))
    scopes = _strings(item.get("scopes"), where + ".scopes") or OAUTH_SCOPES
    for scope in scopes:
        if scope not in OAUTH_SCOPES:
            raise DataError("%s.scopes: %r is not one of %s" % (where, scope, ", ".join(OAUTH_SCOPES)))
    directory.applications[client_id] = Consumer(
        key=client_id,
        secret=_string(item["client_secret"], where + ".client_secret", required=True),
        owner=None,
        scopes=tuple(scopes),
        callback_url=_string(item["redirect_uri"], where + ".redirect_uri", required=True),
        name=_string(item.get("name"), where + ".name", client_id),
    )
