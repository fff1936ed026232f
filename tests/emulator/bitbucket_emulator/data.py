"""Load and validate the emulator's data file into users, consumers, workspaces and repositories."""

import dataclasses
import datetime
import hashlib
import pathlib
import random
import re
import uuid

import yaml

DEMO_DATA = pathlib.Path(__file__).resolve().parent / "data" / "demo.yml"

# Fixed namespace so uuids (and therefore API output) are stable across runs.
_UUID_NAMESPACE = uuid.UUID("6f1c3f1e-5b1a-4a57-9a0e-62b1b7c0e8a1")

_UTC = datetime.timezone.utc
# Generated repositories get updated_on values spread over this window (fixed, not "now",
# so that BBQL tests on dates stay stable).
_GENERATED_WINDOW = (datetime.datetime(2023, 1, 1, tzinfo=_UTC), datetime.datetime(2026, 4, 30, tzinfo=_UTC))
_LANGUAGES = ("python", "go", "java", "javascript", "typescript", "rust", "shell", "ruby", "kotlin", "")
_SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REF_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/+-]*")
_FORK_POLICIES = ("allow_forks", "no_public_forks", "no_forks")


class DataError(ValueError):
    """The data file is unusable; the message is a single line meant for users."""


def make_uuid(kind, name):
    """Return a stable Bitbucket-style uuid string (with braces) for an object."""
    return "{%s}" % uuid.uuid5(_UUID_NAMESPACE, "%s:%s" % (kind, name))


def format_time(value):
    """Format a datetime the way Bitbucket does (ISO-8601 with +00:00)."""
    return value.astimezone(_UTC).isoformat()


@dataclasses.dataclass
class Secret:
    """An API token or app password with its scopes."""

    value: str
    scopes: tuple


@dataclasses.dataclass
class User:
    """A Bitbucket account."""

    username: str
    display_name: str
    email: str
    password: str
    api_tokens: list
    app_passwords: list
    uuid: str
    account_id: str
    created_on: datetime.datetime


@dataclasses.dataclass
class Consumer:
    """An OAuth consumer (client id and secret)."""

    key: str
    secret: str
    owner: User
    scopes: tuple
    callback_url: str
    name: str


@dataclasses.dataclass
class WorkspaceToken:
    """A workspace access token; Bitbucket shows a bot user name for it in clone links."""

    token: str
    scopes: tuple
    name: str
    bot_username: str
    workspace: "Workspace"


@dataclasses.dataclass
class Project:
    """A project inside a workspace."""

    key: str
    name: str
    uuid: str


@dataclasses.dataclass
class Repository:
    """A repository; its git data lives in gitrepos.RepoStore."""

    workspace: "Workspace"
    slug: str
    name: str
    project: Project
    is_private: bool
    language: str
    description: str
    branches: tuple
    tags: tuple
    created_on: datetime.datetime
    updated_on: datetime.datetime
    uuid: str
    size: int
    has_issues: bool
    has_wiki: bool
    fork_policy: str
    website: str

    @property
    def full_name(self):
        """The "workspace/slug" name used in URLs."""
        return "%s/%s" % (self.workspace.slug, self.slug)

    @property
    def mainbranch(self):
        """The first branch in the data is the main branch."""
        return self.branches[0]

    @property
    def git_owner(self):
        """The directory of its bare repository in gitrepos.RepoStore."""
        return self.workspace.slug

    @property
    def members(self):
        """Usernames with access; the first one authors the generated commits."""
        return self.workspace.members


@dataclasses.dataclass
class Workspace:
    """A workspace with its members, tokens and repositories."""

    slug: str
    name: str
    uuid: str
    members: tuple
    admins: tuple
    projects: dict
    access_tokens: list
    repositories: list
    by_slug: dict
    by_uuid: dict

    def find_repository(self, ident):
        """Find a repository by slug or by {uuid}."""
        if ident.startswith("{"):
            return self.by_uuid.get(ident.lower())
        return self.by_slug.get(ident.lower())


@dataclasses.dataclass
class Directory:
    """Everything the emulator knows, indexed for lookups."""

    users: dict
    users_by_email: dict
    consumers: dict
    workspaces: dict
    workspace_tokens: dict

    def find_workspace(self, ident):
        """Find a workspace by slug or by {uuid}."""
        if ident.startswith("{"):
            for workspace in self.workspaces.values():
                if workspace.uuid == ident.lower():
                    return workspace
            return None
        return self.workspaces.get(ident.lower())

    def find_repository_by_uuid(self, ident):
        """Find a repository by {uuid} in any workspace (the /repositories/{}/{uuid} form)."""
        for workspace in self.workspaces.values():
            repo = workspace.by_uuid.get(ident.lower())
            if repo is not None:
                return repo
        return None

    def all_repositories(self):
        """Every repository in data order."""
        for workspace in self.workspaces.values():
            yield from workspace.repositories


def load(path=None):
    """Read and validate a data file (the bundled demo data when path is None)."""
    return build(read_yaml(path if path is not None else DEMO_DATA))


def read_yaml(path):
    """Parse a YAML data file; every problem is a one-line DataError."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError("cannot read data file %s: %s" % (path, err.strerror or err)) from None
    except UnicodeDecodeError:
        raise DataError("data file %s is not UTF-8 text" % path) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DataError("invalid YAML in %s: %s" % (path, _yaml_problem(err))) from None
    return raw


def _yaml_problem(err):
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    text = " ".join(str(problem).split())
    if mark is not None:
        text += " (line %d, column %d)" % (mark.line + 1, mark.column + 1)
    return text


def build(raw):
    """Validate parsed YAML (a dict) and return a Directory."""
    if raw is None:
        raw = {}
    _check_keys(raw, "data file", ("users", "consumers", "workspaces"))
    users = {}
    users_by_email = {}
    for index, item in enumerate(_list(raw.get("users"), "users")):
        user = _user(item, "users[%d]" % index)
        if user.username.lower() in users:
            raise DataError("users[%d]: duplicate username %r" % (index, user.username))
        users[user.username.lower()] = user
        if user.email:
            users_by_email[user.email.lower()] = user
    consumers = {}
    for index, item in enumerate(_list(raw.get("consumers"), "consumers")):
        consumer = _consumer(item, "consumers[%d]" % index, users)
        if consumer.key in consumers:
            raise DataError("consumers[%d]: duplicate key %r" % (index, consumer.key))
        consumers[consumer.key] = consumer
    workspaces = {}
    workspace_tokens = {}
    for index, item in enumerate(_list(raw.get("workspaces"), "workspaces")):
        workspace = _workspace(item, "workspaces[%d]" % index, users)
        if workspace.slug in workspaces:
            raise DataError("workspaces[%d]: duplicate slug %r" % (index, workspace.slug))
        workspaces[workspace.slug] = workspace
        for token in workspace.access_tokens:
            workspace_tokens[token.token] = token
    return Directory(users, users_by_email, consumers, workspaces, workspace_tokens)


# --- validation helpers: each error names the place in the file -------------------------


def _type_name(value):
    return "null" if value is None else type(value).__name__


def _check_keys(value, where, allowed, required=()):
    if not isinstance(value, dict):
        raise DataError("%s: expected a mapping, got %s" % (where, _type_name(value)))
    for key in value:
        if key not in allowed:
            raise DataError("%s: unknown key %r" % (where, key))
    for key in required:
        if key not in value:
            raise DataError("%s: missing required key %r" % (where, key))
    return value


def _list(value, where):
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError("%s: expected a list, got %s" % (where, _type_name(value)))
    return value


def _string(value, where, default=None, required=False):
    if value is None:
        if required:
            raise DataError("%s: a value is required" % where)
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError("%s: expected a string, got %s" % (where, _type_name(value)))
    return str(value)


def _strings(value, where):
    return tuple(_string(item, "%s[%d]" % (where, index), required=True) for index, item in enumerate(_list(value, where)))


def _bool(value, where, default):
    if value is None:
        return default
    if not isinstance(value, bool):
        raise DataError("%s: expected true or false, got %s" % (where, _type_name(value)))
    return value


def _int(value, where, default, minimum=0, maximum=None):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError("%s: expected an integer, got %s" % (where, _type_name(value)))
    if value < minimum or (maximum is not None and value > maximum):
        raise DataError("%s: %d is out of range" % (where, value))
    return value


def _datetime(value, where, default):
    if value is None:
        return default
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, datetime.date):
        parsed = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DataError("%s: %r is not an ISO-8601 date" % (where, value)) from None
    else:
        raise DataError("%s: expected a date, got %s" % (where, _type_name(value)))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return parsed.astimezone(_UTC)


def _slug(value, where):
    slug = _string(value, where, required=True)
    if not _SLUG_RE.fullmatch(slug) or slug.lower().endswith(".git"):
        raise DataError("%s: %r is not a valid slug" % (where, slug))
    return slug


def _ref_names(value, where):
    names = _strings(value, where)
    for name in names:
        bad = not _REF_RE.fullmatch(name) or ".." in name or "//" in name
        if bad or name.endswith(("/", ".", ".lock")):
            raise DataError("%s: %r is not a valid git ref name" % (where, name))
    if len(set(names)) != len(names):
        raise DataError("%s: duplicate names" % where)
    return names


def _secrets(value, where, field):
    secrets = []
    for index, item in enumerate(_list(value, where)):
        here = "%s[%d]" % (where, index)
        _check_keys(item, here, (field, "scopes", "name"), (field,))
        secrets.append(Secret(_string(item[field], here + "." + field, required=True), _strings(item.get("scopes"), here + ".scopes")))
    return secrets


# --- object builders ------------------------------------------------------------------


def _user(item, where):
    _check_keys(item, where, ("username", "display_name", "email", "password", "api_tokens", "app_passwords", "created_on"), ("username",))
    username = _slug(item["username"], where + ".username")
    return User(
        username=username,
        display_name=_string(item.get("display_name"), where + ".display_name", username),
        email=_string(item.get("email"), where + ".email", ""),
        password=_string(item.get("password"), where + ".password", ""),
        api_tokens=_secrets(item.get("api_tokens"), where + ".api_tokens", "token"),
        app_passwords=_secrets(item.get("app_passwords"), where + ".app_passwords", "password"),
        uuid=make_uuid("user", username.lower()),
        account_id="557058:" + hashlib.sha256(username.lower().encode()).hexdigest()[:32],
        created_on=_datetime(item.get("created_on"), where + ".created_on", datetime.datetime(2019, 3, 4, 9, 30, tzinfo=_UTC)),
    )


def _consumer(item, where, users):
    _check_keys(item, where, ("key", "secret", "owner", "scopes", "callback_url", "name"), ("key", "secret", "owner"))
    owner_name = _string(item["owner"], where + ".owner", required=True)
    owner = users.get(owner_name.lower())
    if owner is None:
        raise DataError("%s.owner: unknown user %r" % (where, owner_name))
    key = _string(item["key"], where + ".key", required=True)
    return Consumer(
        key=key,
        secret=_string(item["secret"], where + ".secret", required=True),
        owner=owner,
        scopes=_strings(item.get("scopes"), where + ".scopes"),
        callback_url=_string(item.get("callback_url"), where + ".callback_url", ""),
        name=_string(item.get("name"), where + ".name", key),
    )


def _workspace(item, where, users):
    allowed = ("slug", "name", "members", "admins", "projects", "access_tokens", "repositories", "generate_repositories")
    _check_keys(item, where, allowed, ("slug",))
    slug = _slug(item["slug"], where + ".slug").lower()
    members = _strings(item.get("members"), where + ".members")
    for name in members:
        if name.lower() not in users:
            raise DataError("%s.members: unknown user %r" % (where, name))
    admins = _strings(item.get("admins"), where + ".admins") if "admins" in item else members[:1]
    for name in admins:
        if name not in members:
            raise DataError("%s.admins: %r is not a member" % (where, name))
    workspace = Workspace(
        slug=slug,
        name=_string(item.get("name"), where + ".name", slug),
        uuid=make_uuid("workspace", slug),
        members=tuple(name.lower() for name in members),
        admins=tuple(name.lower() for name in admins),
        projects={},
        access_tokens=[],
        repositories=[],
        by_slug={},
        by_uuid={},
    )
    for index, project in enumerate(_list(item.get("projects"), where + ".projects")):
        here = "%s.projects[%d]" % (where, index)
        _check_keys(project, here, ("key", "name"), ("key",))
        key = _string(project["key"], here + ".key", required=True)
        workspace.projects[key] = Project(key, _string(project.get("name"), here + ".name", key), make_uuid("project", slug + "/" + key))
    for index, token in enumerate(_list(item.get("access_tokens"), where + ".access_tokens")):
        here = "%s.access_tokens[%d]" % (where, index)
        _check_keys(token, here, ("token", "scopes", "name"), ("token",))
        value = _string(token["token"], here + ".token", required=True)
        workspace.access_tokens.append(
            WorkspaceToken(
                token=value,
                scopes=_strings(token.get("scopes"), here + ".scopes"),
                name=_string(token.get("name"), here + ".name", "access-token-%d" % (index + 1)),
                bot_username=_bot_username(slug, index),
                workspace=workspace,
            )
        )
    for index, repo in enumerate(_list(item.get("repositories"), where + ".repositories")):
        _add_repository(workspace, _repository(workspace, repo, "%s.repositories[%d]" % (where, index)))
    if item.get("generate_repositories") is not None:
        _generate(workspace, item["generate_repositories"], where + ".generate_repositories")
    return workspace


def _bot_username(workspace_slug, index):
    # Real workspace access tokens act as a bot user with a random-looking lowercase name.
    digest = hashlib.sha256(("bot:%s:%d" % (workspace_slug, index)).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:30])


def _project(workspace, key):
    if key not in workspace.projects:
        workspace.projects[key] = Project(key, key, make_uuid("project", workspace.slug + "/" + key))
    return workspace.projects[key]


def _add_repository(workspace, repo):
    if repo.slug.lower() in workspace.by_slug:
        raise DataError("workspace %s: duplicate repository slug %r" % (workspace.slug, repo.slug))
    workspace.repositories.append(repo)
    workspace.by_slug[repo.slug.lower()] = repo
    workspace.by_uuid[repo.uuid] = repo


def _repository(workspace, item, where):
    allowed = (
        "slug", "name", "project", "private", "language", "description", "branches", "tags", "created_on", "updated_on",
        "has_issues", "has_wiki", "fork_policy", "website", "size",
    )
    _check_keys(item, where, allowed, ("slug",))
    slug = _slug(item["slug"], where + ".slug")
    rng = random.Random("%s/%s" % (workspace.slug, slug))
    default_updated = _random_time(rng)
    updated_on = _datetime(item.get("updated_on"), where + ".updated_on", default_updated)
    created_on = _datetime(item.get("created_on"), where + ".created_on", updated_on - datetime.timedelta(days=rng.randint(30, 900)))
    if created_on > updated_on:
        raise DataError("%s: created_on is after updated_on" % where)
    branches = _ref_names(item.get("branches", ["main"]), where + ".branches")
    if not branches:
        raise DataError("%s.branches: at least one branch is required (the first is the main branch)" % where)
    is_private = _bool(item.get("private"), where + ".private", True)
    fork_policy = _string(item.get("fork_policy"), where + ".fork_policy", "no_public_forks" if is_private else "allow_forks")
    if fork_policy not in _FORK_POLICIES:
        raise DataError("%s.fork_policy: must be one of %s" % (where, ", ".join(_FORK_POLICIES)))
    return Repository(
        workspace=workspace,
        slug=slug,
        name=_string(item.get("name"), where + ".name", slug),
        project=_project(workspace, _string(item.get("project"), where + ".project", "PROJ")),
        is_private=is_private,
        language=_string(item.get("language"), where + ".language", ""),
        description=_string(item.get("description"), where + ".description", ""),
        branches=branches,
        tags=_ref_names(item.get("tags"), where + ".tags"),
        created_on=created_on,
        updated_on=updated_on,
        uuid=make_uuid("repository", "%s/%s" % (workspace.slug, slug.lower())),
        size=_int(item.get("size"), where + ".size", rng.randint(40_000, 9_000_000)),
        has_issues=_bool(item.get("has_issues"), where + ".has_issues", False),
        has_wiki=_bool(item.get("has_wiki"), where + ".has_wiki", False),
        fork_policy=fork_policy,
        website=_string(item.get("website"), where + ".website", ""),
    )


def _random_time(rng):
    start, end = _GENERATED_WINDOW
    seconds = rng.randint(0, int((end - start).total_seconds()))
    return start + datetime.timedelta(seconds=seconds, microseconds=rng.randint(0, 999_999))


def _generate(workspace, spec, where):
    """Add count generated repositories with varied, deterministic metadata (for scale and BBQL tests)."""
    _check_keys(spec, where, ("count", "prefix", "project", "private_ratio"), ("count",))
    count = _int(spec.get("count"), where + ".count", 0, 0, 10_000)
    prefix = _string(spec.get("prefix"), where + ".prefix", "repo-")
    project = _project(workspace, _string(spec.get("project"), where + ".project", "GEN"))
    ratio = spec.get("private_ratio", 0.8)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise DataError("%s.private_ratio: expected a number between 0 and 1" % where)
    width = max(3, len(str(count)))
    for number in range(1, count + 1):
        slug = "%s%0*d" % (prefix, width, number)
        if not _SLUG_RE.fullmatch(slug):
            raise DataError("%s.prefix: %r does not make valid slugs" % (where, prefix))
        rng = random.Random("%s/%s" % (workspace.slug, slug))
        language = rng.choice(_LANGUAGES)
        updated_on = _random_time(rng)
        branches = ["main"] + (["develop"] if rng.random() < 0.3 else [])
        tags = ["v1.%d.0" % rng.randint(0, 9)] if rng.random() < 0.4 else []
        is_private = rng.random() < ratio
        _add_repository(
            workspace,
            Repository(
                workspace=workspace,
                slug=slug,
                name=slug,
                project=project,
                is_private=is_private,
                language=language,
                description="Generated %s service %s" % (language or "misc", slug),
                branches=tuple(branches),
                tags=tuple(tags),
                created_on=updated_on - datetime.timedelta(days=rng.randint(1, 1500), seconds=rng.randint(0, 86_399)),
                updated_on=updated_on,
                uuid=make_uuid("repository", "%s/%s" % (workspace.slug, slug.lower())),
                size=rng.randint(40_000, 90_000_000),
                has_issues=rng.random() < 0.2,
                has_wiki=False,
                fork_policy="no_public_forks" if is_private else "allow_forks",
                website="",
            ),
        )
