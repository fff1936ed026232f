# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of git_checkout: checkouts that keep local work and never leak the credential.

One GitRunner runs every git command: an argv list (never a shell string) and an environment it
builds itself. The credential reaches git only through the git child's environment: as two
variables read by a credential helper given through GIT_CONFIG_COUNT/KEY/VALUE (the helper text
holds no secret), or, for a Data Center Bearer token, as an http.<origin>.extraHeader given the
same way. Shared code raises CheckoutError (one repository) or GitError (a git command); the
module turns a run with failed repositories into one fail_json.
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import errno
import grp
import io
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib

from urllib.parse import quote, urlsplit, urlunsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import BitbucketError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import CLOUD, DATACENTER, FLAVORS, redact

TOKEN_USERNAME = 'x-token-auth'
USERNAME_VAR = 'CODEFERRY_GIT_USERNAME'
PASSWORD_VAR = 'CODEFERRY_GIT_PASSWORD'
# Answers only "get"; git's "store" and "erase" calls must not reach any other helper either.
HELPER = ('!f() { test "$1" = get || return 0; printf "%%s\\n" "username=$%s" "password=$%s"; }; f'
          % (USERNAME_VAR, PASSWORD_VAR))
STORE_FILE = 'codeferry-credentials'           # inside .git: outside the work tree, gone with the checkout
AUTH_FILE = 'codeferry-auth.config'            # inside .git too: the Bearer header, included from .git/config
UPSTREAM_REF = 'refs/codeferry/upstream'       # the last commit this module fetched and checked out
BACKUP_PREFIX = 'refs/codeferry/backup/'
ARCHIVE_MARKER = '.codeferry-archive.json'
TEMP_INFIX = '.codeferry-'
MODES = ('store', 'url', 'ephemeral')
METHODS = ('git', 'archive')
TRANSPORTS = ('direct', 'controller')
LIST_LIMIT = 10

_HASH = re.compile(r'[0-9a-f]{40}(?:[0-9a-f]{24})?')
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')
_BAD_REF = re.compile(r'[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)')
# Variables of the host that would point git somewhere else, or make it print what it sends.
_DROPPED_ENV = ('GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES',
                'GIT_NAMESPACE', 'GIT_CEILING_DIRECTORIES', 'GIT_ASKPASS', 'SSH_ASKPASS', 'GIT_CONFIG_PARAMETERS',
                'GIT_CURL_VERBOSE', 'GIT_REDACT_COOKIES', 'GIT_TRACE_REDACT')
_BACKUP_IDENTITY = {'GIT_AUTHOR_NAME': 'codeferry.bitbucket', 'GIT_AUTHOR_EMAIL': 'git_checkout@codeferry.invalid',
                    'GIT_COMMITTER_NAME': 'codeferry.bitbucket', 'GIT_COMMITTER_EMAIL': 'git_checkout@codeferry.invalid'}


# The options of git_checkout, shared by the module and its action plugin (transport=controller).
_REPOSITORY_OPTIONS = dict(
    url=dict(type='str', required=True),
    dest=dict(type='path'),
    commit=dict(type='str'),
    ref=dict(type='str'),
    depth=dict(type='int'),
    bundle=dict(type='path'),
    bundle_shallow=dict(type='list', elements='str'),
    archive=dict(type='path'),
)
ARGUMENT_SPEC = dict(
    repositories=dict(type='list', elements='dict', required=True, options=_REPOSITORY_OPTIONS),
    root=dict(type='path'),
    method=dict(type='str', default='git', choices=list(METHODS)),
    transport=dict(type='str', default='direct', choices=list(TRANSPORTS)),
    mirror_dir=dict(type='path'),
    credential_mode=dict(type='str', default='store', choices=list(MODES)),
    flavor=dict(type='str', default=CLOUD, choices=list(FLAVORS)),
    access_token=dict(type='str', no_log=True),
    username=dict(type='str'),
    password=dict(type='str', no_log=True),
    force=dict(type='bool', default=False),
    owner=dict(type='str'),
    group=dict(type='str'),
    mode=dict(type='raw'),
    ca_path=dict(type='path'),
    ca_content=dict(type='str'),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='int', default=30),
)
ARGUMENT_RULES = dict(
    mutually_exclusive=[('access_token', 'username'), ('access_token', 'password')],
    required_together=[('username', 'password')],
    required_by={'ca_content': 'ca_path'},
)


class GitError(BitbucketError):
    """A git command failed; the message holds its redacted stderr."""

    def __init__(self, message, stderr=''):
        super(GitError, self).__init__(message)
        self.stderr = stderr


class CheckoutError(BitbucketError):
    """One repository cannot be checked out as asked; the others go on."""

    def __init__(self, message, local_work=None):
        super(CheckoutError, self).__init__(message)
        self.local_work = local_work


class CheckoutFailed(BitbucketError):
    """Some repositories failed: the module fails with every per-repository result attached."""

    def __init__(self, message, repositories, changed):
        super(CheckoutFailed, self).__init__(message)
        self.repositories = repositories
        self.changed = changed

    def result_fields(self):
        return {'changed': self.changed, 'repositories': self.repositories}


class NeedsObjects(BitbucketError):
    """transport=controller: the host lacks the objects and no bundle or archive was given for them."""

    def __init__(self, have, new):
        super(NeedsObjects, self).__init__('the controller must send the objects')
        self.have = have
        self.new = new


# --- input --------------------------------------------------------------------------------


class Credential(object):
    """A token or a username and password, and how git and HTTP downloads carry it.

    kind 'token': a Cloud access token, as x-token-auth through the credential helper;
    'basic': a username and password (Cloud API token or app password, Data Center personal token),
    through the credential helper; 'bearer': a Data Center HTTP access token or OAuth token, which
    Data Center takes only as 'Authorization: Bearer' (project and repository tokens have no user).
    """

    def __init__(self, username, secret, kind):
        checked = (('the secret', secret),) if kind == 'bearer' else (('username', username), ('the secret', secret))
        for what, value in checked:
            if not value or _CONTROL.search(value):
                # git's credential protocol and HTTP headers are line based: a newline would inject fields.
                raise ValidationError('%s must be a non-empty string without control characters or newlines' % what)
        self.username = username
        self.secret = secret
        self.kind = kind

    @classmethod
    def from_params(cls, params):
        flavor = params.get('flavor') or CLOUD
        if flavor not in FLAVORS:
            raise ValidationError('flavor must be one of %s, got %r' % (', '.join(FLAVORS), flavor))
        if params.get('access_token'):
            if flavor == DATACENTER:
                return cls(None, params['access_token'], 'bearer')
            return cls(TOKEN_USERNAME, params['access_token'], 'token')
        if params.get('username') or params.get('password'):
            if not (params.get('username') and params.get('password')):
                raise ValidationError('username and password go together')
            return cls(params['username'], params['password'], 'basic')
        return None

    @property
    def header_only(self):
        """Whether git can carry it only as an extra header (no credential helper, no URL)."""
        return self.kind == 'bearer'

    def env(self):
        return {USERNAME_VAR: self.username, PASSWORD_VAR: self.secret}

    def secrets(self):
        return [self.secret]

    def store_line(self, base):
        """The line git-credential-store itself would write, byte for byte, so git's own rewrites are no-ops."""
        parts = urlsplit(base)
        return '%s://%s:%s@%s\n' % (parts.scheme, _store_quote(self.username), _store_quote(self.secret),
                                    _store_quote(parts.netloc))

    def auth_config(self, base):
        """The text of AUTH_FILE: the Bearer header, for the repository's origin only."""
        # Quoted, so that '#', ';' or a trailing space in the token stay part of the value.
        return '[http "%s"]\n\textraHeader = "%s"\n' % (_config_quote(origin_of(base)),
                                                        _config_quote('Authorization: ' + self.git_header()))

    def url_with(self, url):
        parts = urlsplit(url)
        userinfo = '%s:%s@' % (quote(self.username, safe=''), quote(self.secret, safe=''))
        return urlunsplit((parts.scheme, userinfo + parts.netloc, parts.path, '', ''))

    def authorization(self):
        """The Authorization header of an HTTP download (archives): Bearer for tokens, else Basic."""
        if self.kind in ('token', 'bearer'):
            return 'Bearer ' + self.secret
        return self.basic()

    def git_header(self):
        """The Authorization value git sends as an extra header: Bearer on Data Center, else Basic."""
        if self.kind == 'bearer':
            return 'Bearer ' + self.secret
        return self.basic()

    def basic(self):
        raw = ('%s:%s' % (self.username, self.secret)).encode('utf-8')
        return 'Basic ' + base64.b64encode(raw).decode('ascii')


def origin_of(base):
    """scheme://host[:port]/ of a base: the scope of an http.<url>.* key that covers the whole server, no other."""
    return base.rstrip('/') + '/'


def header_key(base):
    return 'http.%s.extraHeader' % origin_of(base)


def _config_quote(text):
    return text.replace('\\', '\\\\').replace('"', '\\"')


def _store_quote(text):
    # git-credential-store percent-encodes every byte outside RFC 3986's unreserved set, in lower case.
    return ''.join(ch if re.match(r'[A-Za-z0-9._~-]$', ch) else ''.join('%%%02x' % b for b in ch.encode('utf-8'))
                   for ch in text)


def clean_url(url):
    """Validate a repository URL and return (url, base): https, no credentials, no query."""
    if not isinstance(url, str) or not url:
        raise ValidationError('url is required')
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError('url %r is not a valid URL' % url.rpartition('@')[2])
    if '@' in parts.netloc:
        # Never echo the userinfo: it is the secret this module exists to keep out of sight.
        raise ValidationError('url must not contain credentials (user@ or user:password@ before the host); '
                              'give access_token, or username and password, instead')
    if parts.scheme != 'https':
        raise ValidationError('url %s must start with https:// (the credential must not travel unencrypted, '
                              'and other transports do not use it)' % url)
    if not parts.hostname or parts.query or parts.fragment or _CONTROL.search(url) or ' ' in url:
        raise ValidationError('url %s must be https://host/workspace/repository, without query or fragment' % url)
    if parts.path.strip('/') == '' or port == 0:
        raise ValidationError('url %s names no repository' % url)
    base = '%s://%s' % (parts.scheme, parts.netloc.lower())
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, '', '')), base


def slug_of(url):
    """The repository's name in a clean URL: its last path segment without .git."""
    name = urlsplit(url).path.rstrip('/').rpartition('/')[2]
    return name[:-4] if name.endswith('.git') else name


def same_repository(one, other):
    """Two URLs of one repository: credentials, case of the host, trailing / and .git do not matter."""
    def key(url):
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        path = parts.path.rstrip('/')
        if path.endswith('.git'):
            path = path[:-4]
        return (parts.scheme.lower(), parts.netloc.rpartition('@')[2].lower(), path)
    return key(one) == key(other)


def validate_ref(ref):
    if not isinstance(ref, str) or not ref or ref.startswith(('-', '/', '.')) or ref.endswith(('/', '.')) \
            or _BAD_REF.search(ref) or ref == '@':
        raise ValidationError('ref %r is not a valid branch or tag name' % (ref,))
    return ref


class RepoSpec(object):
    """One entry of the repositories option, validated."""

    def __init__(self, entry, root=None):
        if not isinstance(entry, dict):
            raise ValidationError('each entry of repositories must be a dictionary')
        self.url, self.base = clean_url(entry.get('url'))
        dest = entry.get('dest')
        if not dest and root:
            slug = slug_of(self.url)
            if slug in ('', '.', '..'):
                # Joined to root, such a name would put the checkout on root itself or above it.
                raise ValidationError('url %s names no repository that can go under root; give dest' % self.url)
            dest = os.path.join(root, slug)
        if not isinstance(dest, str) or not dest:
            raise ValidationError('dest is required for %s when root is not set' % self.url)
        if not os.path.isabs(dest):
            raise ValidationError('dest must be an absolute path, got %r' % dest)
        self.dest = os.path.normpath(dest)
        if self.dest == '/' or '\0' in self.dest:
            raise ValidationError('dest %r cannot hold a checkout' % dest)
        commit = entry.get('commit')
        if commit is not None:
            if not isinstance(commit, str) or not _HASH.fullmatch(commit.lower()):
                raise ValidationError('commit must be a full commit hash (40 hexadecimal digits, or 64 for SHA-256 '
                                      'repositories), got %r; give branch and tag names as ref' % (commit,))
            commit = commit.lower()
        self.commit = commit
        self.ref = validate_ref(entry['ref']) if entry.get('ref') is not None else None
        depth = entry.get('depth')
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ValidationError('depth must be a whole number of commits, at least 1, got %r' % (depth,))
        self.depth = depth
        # Set by the action plugin for transport=controller: files on this host to take the objects from.
        self.bundle = entry.get('bundle') or None
        self.archive = entry.get('archive') or None
        shallow = entry.get('bundle_shallow') or []
        if not isinstance(shallow, list) or not all(isinstance(c, str) and _HASH.fullmatch(c) for c in shallow):
            raise ValidationError('bundle_shallow must be a list of full commit hashes')
        self.bundle_shallow = shallow
        for name in ('bundle', 'archive'):
            path = getattr(self, name)
            if path is not None and (not isinstance(path, str) or not os.path.isabs(path)):
                raise ValidationError('%s must be an absolute path on the host, got %r' % (name, path))

    @property
    def ref_kinds(self):
        """The kinds of ref self.ref may be, in the order they are tried."""
        if self.ref is None:
            return ()
        if self.ref.startswith('refs/heads/'):
            return (('branch', self.ref[len('refs/heads/'):]),)
        if self.ref.startswith('refs/tags/'):
            return (('tag', self.ref[len('refs/tags/'):]),)
        return (('branch', self.ref), ('tag', self.ref))


class Identity(object):
    """Who git runs as, and who the files belong to."""

    def __init__(self, uid, gid, home=None, name=None):
        self.uid = uid
        self.gid = gid
        self.home = home
        self.name = name

    @classmethod
    def of_uid(cls, uid, gid=None):
        try:
            entry = pwd.getpwuid(uid)
            return cls(uid, entry.pw_gid if gid is None else gid, entry.pw_dir, entry.pw_name)
        except KeyError:
            return cls(uid, os.getgid() if gid is None else gid, None, None)

    def differs(self):
        return self.uid != os.geteuid()


def resolve_owner(owner, group):
    """(uid or -1, gid or -1) from names or numbers; -1 leaves that part alone."""
    uid = gid = -1
    if owner not in (None, ''):
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            uid = _numeric_id('owner', owner, 'user')
        if uid != os.geteuid() and os.geteuid() != 0:
            raise ValidationError('owner %s: the module runs as %s and cannot give files to another user; use become'
                                  % (owner, _user_name(os.geteuid())))
    if group not in (None, ''):
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            gid = _numeric_id('group', group, 'group')
    return uid, gid


def _numeric_id(option, value, what):
    """A user or group id given as a number (0 to 2**32 - 2; 2**32 - 1 means 'unchanged' to the kernel)."""
    if not re.match(r'^[0-9]{1,10}$', str(value)) or int(value) > 0xFFFFFFFE:
        raise ValidationError('%s %s: no such %s on this host, and not an id from 0 to 4294967294' % (option, value, what))
    return int(value)


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def parse_mode(mode):
    if mode is None or mode == '':
        return None
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and re.fullmatch(r'0?[0-7]{3,4}', mode):
        value = int(mode, 8)
    else:
        raise ValidationError('mode must be an octal string such as "0750", got %r' % (mode,))
    if not 0 <= value <= 0o7777:
        raise ValidationError('mode %r is out of range' % (mode,))
    return value


# --- running git ------------------------------------------------------------------------------


class GitRunner(object):
    """Runs git: argv lists only, and an environment built here.

    The host's own settings (proxy variables, GIT_SSL_CAINFO, system config) still apply;
    ca_path and validate_certs override them for this run. Only network commands see the
    credential, and only through the environment.
    """

    def __init__(self, credential=None, ca_path=None, validate_certs=True, timeout=None, environ=None, header_auth=False):
        self.credential = credential
        # The controller's mirrors: the credential goes with the first request (no 401 round trip), from the
        # environment too.
        self.header_auth = header_auth
        self.ca_path = ca_path
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.environ = dict(os.environ if environ is None else environ)
        self.executable = shutil.which('git', path=self.environ.get('PATH') or os.defpath)

    def secrets(self):
        if self.credential is None:
            return []
        # A Basic header is base64 of the secret: mask that form too.
        basic = self.header_auth and not self.credential.header_only
        return self.credential.secrets() + ([self.credential.basic()[len('Basic '):]] if basic else [])

    def _env(self, identity, network, extra, origin=None, url=None, stored=False):
        """The child's environment; origin and url (the repository's) scope this run's extra headers, the url more
        narrowly; stored: the checkout holds AUTH_FILE, whose header must not go out beside or instead of ours."""
        env = dict((k, v) for k, v in self.environ.items()
                   if k not in _DROPPED_ENV and not k.startswith(('GIT_TRACE', 'GIT_CONFIG_KEY_', 'GIT_CONFIG_VALUE_'))
                   and k != 'GIT_CONFIG_COUNT')
        # Config the host passes this way is kept; ours comes after it.
        config = []
        try:
            count = int(self.environ.get('GIT_CONFIG_COUNT') or 0)
        except ValueError:
            count = 0
        for index in range(count):
            key = self.environ.get('GIT_CONFIG_KEY_%d' % index)
            if key is not None:
                config.append((key, self.environ.get('GIT_CONFIG_VALUE_%d' % index, '')))
        env.update(LC_ALL='C', LANGUAGE='C', GIT_TERMINAL_PROMPT='0')
        if identity is not None and identity.differs():
            # The owner's git must not try to read root's ~/.gitconfig.
            env['HOME'] = identity.home or '/nonexistent'
            env.pop('XDG_CONFIG_HOME', None)
            if identity.name:
                env['USER'] = env['LOGNAME'] = identity.name
        if network:
            # An empty helper value clears every helper configured so far (system, global, the
            # checkout's store): this run uses the credential it was given, and nothing else
            # learns of it.
            config.append(('credential.helper', ''))
            # A redirect to another origin would get the credential too (git asks the helper for the new host,
            # and sends extra headers wherever it goes): git follows none.
            config.append(('http.followRedirects', 'false'))
            # git uses only the most specific http.<url>.extraHeader entries that match: keyed to the repository's
            # own URL, ours are never passed over for one of the config files (a stale header keyed to that URL).
            scoped = ('http.%s.extraHeader' % url) if url else header_key(origin) if origin else None
            bearer = self.credential is not None and self.credential.header_only
            if scoped and (bearer or stored):
                # An empty value empties git's list of extra headers: a header the config files hold (AUTH_FILE of
                # an earlier run, maybe an older token) is not sent beside the one of this run. Other runs keep the
                # user's own headers, as they always did.
                config.append((scoped, ''))
            if self.credential is not None and (self.header_auth or self.credential.header_only):
                if scoped:
                    # Scoped: git sends it to this repository only, whatever else it talks to.
                    config.append((scoped, 'Authorization: ' + self.credential.git_header()))
                elif self.credential.header_only:
                    raise CheckoutError('internal error: a Bearer token needs the origin it is for')
                else:
                    config.append(('http.extraHeader', 'Authorization: ' + self.credential.git_header()))
            elif self.credential is not None:
                config.append(('credential.helper', HELPER))
                env.update(self.credential.env())
            if self.timeout:
                config.extend((('http.lowSpeedLimit', '1000'), ('http.lowSpeedTime', str(int(self.timeout)))))
            if self.ca_path:
                env['GIT_SSL_CAINFO'] = self.ca_path
            if not self.validate_certs:
                env['GIT_SSL_NO_VERIFY'] = '1'
        if config:
            env['GIT_CONFIG_COUNT'] = str(len(config))
            for index, (key, value) in enumerate(config):
                env['GIT_CONFIG_KEY_%d' % index] = key
                env['GIT_CONFIG_VALUE_%d' % index] = value
        env.update(extra or {})
        return env

    def run(self, args, cwd, identity=None, network=False, check=True, env=None, what=None, origin=None, url=None):
        """Run git args in cwd; return (rc, stdout, stderr) as text.

        network: the command talks to the git server at origin (scheme://host[:port]), for the repository at url,
        with the credential."""
        if not self.executable:
            raise CheckoutError('git is not installed on this host (or not on PATH); install git, or use method=archive')
        preexec = None
        if identity is not None and identity.differs():
            preexec = _drop_privileges(identity)
        try:
            child_env = self._env(identity, network, env, origin, url, network and _holds_auth_file(cwd))
            proc = subprocess.run([self.executable] + list(args), cwd=cwd, env=child_env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  preexec_fn=preexec, check=False)
        except OSError as exc:
            raise CheckoutError('cannot run git in %s: %s' % (cwd, exc.strerror or exc))
        out = proc.stdout.decode('utf-8', 'replace')
        err = redact(proc.stderr.decode('utf-8', 'replace'), self.secrets())
        if check and proc.returncode != 0:
            raise GitError('%s failed: %s' % (what or 'git ' + args[0], _last_lines(err) or 'exit code %d' % proc.returncode), err)
        return proc.returncode, out, err

    def out(self, args, cwd, identity=None, **kwargs):
        return self.run(args, cwd, identity, **kwargs)[1]


def _holds_auth_file(cwd):
    """Whether the repository at cwd (work tree or bare) holds AUTH_FILE, which its config may include."""
    git_dir = os.path.join(cwd, '.git')
    return os.path.exists(os.path.join(git_dir if os.path.isdir(git_dir) else cwd, AUTH_FILE))


def _drop_privileges(identity):
    def drop():
        if identity.name:
            os.initgroups(identity.name, identity.gid)
        else:
            os.setgroups([identity.gid])
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    return drop


def _last_lines(text, count=4):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return ' / '.join(lines[-count:])


# --- file helpers -------------------------------------------------------------------------------


def write_private(path, text, uid=-1, gid=-1, mode=0o600):
    """Write text to path atomically, with mode (0600) and owned by uid:gid from the first byte on."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        os.fchmod(fd, mode)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            fd = None
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def read_text(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def install_ca(path, content, check_mode=False):
    """Make the file at path hold the PEM text content (mode 0644); returns (changed, path git should use now).

    The file is replaced atomically and never written through a link. In check mode nothing is written,
    and a CA that is not there yet is given to git from a temporary file (the caller removes it)."""
    if not path:
        raise ValidationError('ca_content needs ca_path: where to keep the CA certificates on the host')
    if not isinstance(content, str) or '-----BEGIN CERTIFICATE-----' not in content:
        raise ValidationError('ca_content is not PEM text: it has no -----BEGIN CERTIFICATE----- line')
    text = content if content.endswith('\n') else content + '\n'
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise ValidationError('ca_path %s is a link or not a regular file; it is left as it is' % path)
    if read_text(path) == text and stat.S_IMODE(os.stat(path).st_mode) == 0o644:
        return False, path
    if check_mode:
        if os.path.isfile(path):
            return True, path
        fd, tmp = tempfile.mkstemp(prefix='codeferry-ca-', suffix='.pem')
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
        return True, tmp
    try:
        os.makedirs(os.path.dirname(path) or '.', mode=0o755, exist_ok=True)
        write_private(path, text, mode=0o644)
    except OSError as exc:
        raise ValidationError('cannot write ca_path %s: %s' % (path, exc.strerror or exc)) from None
    return True, path


def apply_ownership(root, uid, gid, check_mode=False):
    """Give everything under root (links themselves, not their targets) to uid:gid; True if anything changed."""
    if uid == -1 and gid == -1:
        return False
    changed = False

    def fix(path):
        info = os.lstat(path)
        if (uid != -1 and info.st_uid != uid) or (gid != -1 and info.st_gid != gid):
            if not check_mode:
                os.lchown(path, uid, gid)
            return True
        return False

    changed = fix(root)
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            changed = fix(os.path.join(directory, name)) or changed
    return changed


def apply_mode(path, mode, check_mode=False):
    if mode is None or stat.S_IMODE(os.stat(path).st_mode) == mode:
        return False
    if not check_mode:
        os.chmod(path, mode)
    return True


def remove_tree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def remove_leftovers(parent, name):
    """Temporary trees of an earlier run that was killed (no one else makes .<name>.codeferry-* beside dest)."""
    prefix = '.%s%s' % (name, TEMP_INFIX)
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix):
            remove_tree(os.path.join(parent, entry))


def make_temp_beside(dest, kind):
    """A new directory beside dest, on the same file system, for an atomic rename into place."""
    parent, name = os.path.split(dest)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise CheckoutError('cannot create the parent directory %s: %s' % (parent, exc.strerror or exc))
    remove_leftovers(parent, name)
    try:
        return tempfile.mkdtemp(prefix='.%s%s%s-' % (name, TEMP_INFIX, kind), dir=parent)
    except OSError as exc:
        raise CheckoutError('cannot create a temporary directory in %s (it must be writable): %s'
                            % (parent, exc.strerror or exc))


def inspect_dest(dest):
    """absent, empty, git, archive or other; CheckoutError for what can never hold a checkout."""
    try:
        info = os.stat(dest)
    except FileNotFoundError:
        if os.path.islink(dest):
            raise CheckoutError('dest %s is a symbolic link to nothing' % dest)
        return 'absent'
    except OSError as exc:
        raise CheckoutError('cannot read dest %s: %s' % (dest, exc.strerror or exc))
    if not stat.S_ISDIR(info.st_mode):
        raise CheckoutError('dest %s exists and is not a directory' % dest)
    try:
        entries = os.listdir(dest)
    except OSError as exc:
        raise CheckoutError('cannot read dest %s: %s' % (dest, exc.strerror or exc))
    if not entries:
        return 'empty'
    git_dir = os.path.join(dest, '.git')
    if os.path.isdir(git_dir) and not os.path.islink(git_dir):
        return 'git'
    if os.path.lexists(git_dir):
        raise CheckoutError('dest %s has a .git file (a linked worktree or submodule); only plain checkouts are managed' % dest)
    if ARCHIVE_MARKER in entries:
        return 'archive'
    return 'other'


# --- git checkouts ------------------------------------------------------------------------------


def _limited(items):
    items = list(items)
    if len(items) > LIST_LIMIT:
        return items[:LIST_LIMIT] + ['... and %d more' % (len(items) - LIST_LIMIT)]
    return items


def new_result(dest, url, method, ref=None, after=None, action=None):
    """A repository's result before anything is done: every key a result has, nothing changed yet."""
    return {'dest': dest, 'url': url, 'method': method, 'ref': ref, 'before': None, 'after': after, 'action': action,
            'changed': False, 'credential_refreshed': False, 'backup_ref': None, 'local_work': None}


def describe_local_work(work):
    parts = []
    for key, label in (('staged', 'staged changes'), ('modified', 'modified files'),
                       ('local_commits', 'local commits not on the remote'),
                       ('untracked_in_the_way', 'untracked files the new commit would overwrite')):
        if work.get(key):
            parts.append('%s: %s' % (label, ', '.join(_limited(work[key]))))
    return '; '.join(parts)


class GitCheckout(object):
    """Brings one git checkout to the wanted commit; apply() returns the result for this repository."""

    def __init__(self, spec, options, git):
        self.spec = spec
        self.options = options
        self.git = git
        self.uid, self.gid = options['uid'], options['gid']
        self.check_mode = options['check_mode']
        self.result = new_result(spec.dest, spec.url, 'git', spec.ref, spec.commit)
        self.identity = None
        # transport=controller: no network; objects come only from the bundle the controller sent.
        self.offline = options.get('transport') == 'controller'

    # -- small git helpers

    def _git(self, args, cwd=None, **kwargs):
        return self.git.out(args, cwd or self.spec.dest, self.identity, **kwargs).strip()

    def _try(self, args, cwd=None, **kwargs):
        rc, out, dummy = self.git.run(args, cwd or self.spec.dest, self.identity, check=False, **kwargs)
        return out.strip() if rc == 0 else None

    def _has_commit(self, commit, cwd=None):
        return self._try(['cat-file', '-e', commit + '^{commit}'], cwd) is not None

    def _ref_exists(self, ref, cwd=None):
        return self._try(['rev-parse', '--verify', '--quiet', ref + '^{commit}'], cwd) is not None

    # -- entry point

    def apply(self):
        state = inspect_dest(self.spec.dest)
        if state == 'other':
            raise CheckoutError('dest %s exists, is not empty and is not a git checkout; move it away or pick another dest'
                                % self.spec.dest)
        if state == 'archive':
            raise CheckoutError('dest %s holds a checkout made with method=archive; remove it to use method=git' % self.spec.dest)
        if state in ('absent', 'empty'):
            return self._clone()
        return self._update()

    def _target_identity(self):
        if self.uid != -1:
            return Identity.of_uid(self.uid, None if self.gid == -1 else self.gid)
        return None

    # -- clone

    def _clone(self):
        spec = self.spec
        self.result['action'] = 'cloned'
        self.result['changed'] = True
        self.identity = self._target_identity()
        if self.offline and not spec.bundle:
            raise NeedsObjects([], True)
        if self.check_mode:
            self.result['after'] = self._probe(None)[0]
            return self.result
        # An empty directory behind a symbolic link is replaced, the link kept.
        target = os.path.realpath(spec.dest) if os.path.islink(spec.dest) else spec.dest
        tmp = make_temp_beside(target, 'clone')
        try:
            if self.uid != -1 or self.gid != -1:
                os.chown(tmp, self.uid, self.gid)
            init = ['init', '--quiet']
            if spec.commit and len(spec.commit) == 64:
                init.append('--object-format=sha256')
            self._git(init + [tmp], cwd=tmp)
            self._git(['config', 'remote.origin.url', spec.url], cwd=tmp)
            self._git(['config', 'remote.origin.fetch', '+refs/heads/*:refs/remotes/origin/*'], cwd=tmp)
            try:
                commit, kind, name = self._fetch(tmp, depth=spec.depth)
            except GitError as exc:
                raise CheckoutError('clone of %s into %s failed, nothing was left at %s; run again once the cause is fixed: %s'
                                    % (spec.url, spec.dest, spec.dest, exc))
            self._checkout(tmp, commit, kind, name, force=False)
            self.result['credential_refreshed'] = self._sync_credentials(tmp)
            apply_ownership(tmp, self.uid, self.gid)
            os.chmod(tmp, self.options['mode'] if self.options['mode'] is not None else 0o755)
            try:
                os.rename(tmp, target)
            except OSError as exc:
                raise CheckoutError('cannot move the new checkout into place at %s: %s' % (spec.dest, exc.strerror or exc))
        except BaseException:
            remove_tree(tmp)
            raise
        self.result['after'] = commit
        return self.result

    # -- update

    def _update(self):
        spec = self.spec
        dest = spec.dest
        # Read the origin before running anything as the owner: a repository of someone else is
        # refused before its ownership is touched.
        rc, origin, dummy = self.git.run(['config', '--file', os.path.join(dest, '.git', 'config'), '--get',
                                          'remote.origin.url'], '/', check=False)
        origin = origin.strip()
        if rc != 0 or not origin:
            raise CheckoutError('dest %s is a git repository without an origin remote; it was not made by this module'
                                % dest)
        if not same_repository(origin, spec.url):
            raise CheckoutError('dest %s holds a clone of another repository (%s), not %s'
                                % (dest, redact_userinfo(origin), spec.url))
        owner_changed = apply_ownership(dest, self.uid, self.gid, self.check_mode)
        if self.check_mode or self.uid == -1:
            info = os.stat(dest)
            self.identity = Identity.of_uid(info.st_uid, info.st_gid) if os.geteuid() == 0 else None
        else:
            self.identity = self._target_identity()

        head = self._try(['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'])
        branch = self._try(['symbolic-ref', '--quiet', 'HEAD'])
        self.result['before'] = head
        dirty = self._status()
        kind, name = self._local_ref_kind()
        if kind is None and self.offline and len(spec.ref_kinds) == 1 and spec.commit and self._has_commit(spec.commit):
            # The controller names the ref in full (refs/heads/ or refs/tags/), and the commit is here already.
            kind, name = spec.ref_kinds[0]
        on_target = (spec.commit is not None and head == spec.commit
                     and (kind != 'branch' or branch == 'refs/heads/' + name))
        if on_target and not dirty['staged'] and not dirty['modified']:
            # The warm path: nothing to fetch, nothing to check out.
            return self._finish('unchanged', owner_changed)

        if spec.commit and self._has_commit(spec.commit) and (kind is not None or spec.ref is None):
            commit = spec.commit
            probe_dir = None
        elif self.check_mode:
            commit, kind, name, probe_dir = self._probe(dest)
        else:
            try:
                commit, kind, name = self._fetch(dest, depth=spec.depth if self._shallow() else None)
            except GitError as exc:
                raise CheckoutError('fetch of %s into %s failed; the checkout is as it was: %s' % (spec.url, dest, exc))
            probe_dir = None
        try:
            self.result['after'] = commit
            reset_branch = None
            if kind == 'branch' and branch != 'refs/heads/' + name and self._ref_exists('refs/heads/' + name):
                reset_branch = 'refs/heads/' + name
            work = dict(dirty)
            work['local_commits'] = self._local_commits(commit, reset_branch, probe_dir)
            work['untracked_in_the_way'] = self._untracked_in_the_way(head, commit, probe_dir)
        finally:
            if probe_dir:
                remove_tree(os.path.dirname(probe_dir))
        at_stake = any(work.values())
        if at_stake:
            self.result['local_work'] = work
            if not self.options['force']:
                self.result['action'] = 'refused'
                raise CheckoutError('dest %s has local work that checking out %s would destroy (%s); commit and push it, '
                                    'or set force=true to save it under %s<time> first'
                                    % (dest, commit, describe_local_work(work), BACKUP_PREFIX), local_work=work)
        if head == commit and not at_stake and (kind != 'branch' or branch == 'refs/heads/' + name):
            # Fetched only to learn what ref is (or where it points): the checkout is already there.
            return self._finish('unchanged', owner_changed)
        self.result['changed'] = True
        self.result['action'] = 'updated'
        if self.check_mode:
            self.result['credential_refreshed'] = self._sync_credentials(dest)
            return self.result
        if at_stake:
            parents = [c for c in (head, reset_branch and self._git(['rev-parse', reset_branch])) if c]
            self.result['backup_ref'] = self._backup(parents, work['untracked_in_the_way'], commit)
        self._checkout(dest, commit, kind, name, force=at_stake)
        return self._finish('updated', True)

    def _finish(self, action, changed):
        self.result['action'] = action
        self.result['changed'] = self.result['changed'] or changed
        self.result['credential_refreshed'] = self._sync_credentials(self.spec.dest)
        if not self.check_mode:
            apply_ownership(self.spec.dest, self.uid, self.gid)
        self.result['changed'] = apply_mode(self.spec.dest, self.options['mode'], self.check_mode) or self.result['changed']
        return self.result

    # -- reading the checkout

    def _status(self):
        # No optional locks: a status must not rewrite the index (as root, that would change its owner).
        out = self.git.out(['status', '--porcelain=v1', '-z', '--untracked-files=no', '--no-renames', '--ignore-submodules=none'],
                           self.spec.dest, self.identity, env={'GIT_OPTIONAL_LOCKS': '0'})
        staged, modified = [], []
        for entry in out.split('\0'):
            if len(entry) < 4:
                continue
            x, y, path = entry[0], entry[1], entry[3:]
            if x not in ' ?!':
                staged.append(path)
            if y not in ' ?!':
                modified.append(path)
        return {'staged': staged, 'modified': modified}

    def _shallow(self):
        return self._try(['rev-parse', '--is-shallow-repository']) == 'true'

    def _local_ref_kind(self):
        """What the checkout itself knows about ref: (kind, name), or (None, None) when it needs the remote."""
        for kind, name in self.spec.ref_kinds:
            local = 'refs/remotes/origin/' + name if kind == 'branch' else 'refs/tags/' + name
            if self._ref_exists(local):
                return kind, name
        return None, None

    def _local_commits(self, target, reset_branch, probe_dir):
        tips = [tip for tip in ('HEAD', reset_branch) if tip and self._ref_exists(tip)]
        if not tips:
            return []
        exclude = ['--remotes', target]
        if self._ref_exists(UPSTREAM_REF):
            exclude.append(UPSTREAM_REF)
        env = {'GIT_ALTERNATE_OBJECT_DIRECTORIES': os.path.join(probe_dir, 'objects')} if probe_dir else None
        out = self._git(['log', '--max-count=1000', '--format=%h %s'] + tips + ['--not'] + exclude, env=env)
        return [line for line in out.splitlines() if line]

    def _untracked_in_the_way(self, head, target, probe_dir):
        """Paths the target commit adds that exist in the work tree untracked (ignored files included)."""
        env = {'GIT_ALTERNATE_OBJECT_DIRECTORIES': os.path.join(probe_dir, 'objects')} if probe_dir else None
        if head:
            added = self._git(['diff', '--name-only', '-z', '--no-renames', '--diff-filter=A', head, target], env=env)
            removed = set(self._git(['diff', '--name-only', '-z', '--no-renames', '--diff-filter=D', head, target],
                                    env=env).split('\0'))
        else:
            added = self._git(['ls-tree', '-r', '-z', '--name-only', target], env=env)
            removed = set()
        found = []
        for path in (p for p in added.split('\0') if p):
            full = os.path.join(self.spec.dest, path)
            # A file where the commit needs a directory is in the way as much as the file itself.
            parts = path.split('/')
            for depth in range(1, len(parts)):
                prefix = '/'.join(parts[:depth])
                full_prefix = os.path.join(self.spec.dest, prefix)
                if os.path.lexists(full_prefix) and not os.path.isdir(full_prefix) and prefix not in removed:
                    found.append(prefix)
                    break
            else:
                if os.path.lexists(full):
                    if os.path.isdir(full) and not os.path.islink(full):
                        if self._try(['ls-files', '--others', '--', path]):
                            found.append(path + '/')
                    else:
                        found.append(path)
        return sorted(set(found))

    # -- network

    def _fetch(self, cwd, depth=None):
        """Fetch the wanted commit and/or ref into the repository at cwd; return (commit, kind, name)."""
        spec = self.spec
        if self.offline:
            return self._fetch_bundle(cwd)
        base = ['fetch', '--quiet', '--no-tags', '--no-recurse-submodules']
        if depth:
            base.append('--depth=%d' % depth)
        candidates = spec.ref_kinds or ((None, None),)
        last = None
        for kind, name in candidates:
            refspecs = [spec.commit] if spec.commit else []
            if kind == 'branch':
                refspecs.append('+refs/heads/%s:refs/remotes/origin/%s' % (name, name))
            elif kind == 'tag':
                refspecs.append('+refs/tags/%s:refs/tags/%s' % (name, name))
            elif not spec.commit:
                refspecs.append('HEAD')
            rc, dummy, err = self.git.run(base + ['origin'] + refspecs, cwd, self.identity, network=True, check=False,
                                          origin=spec.base, url=spec.url)
            if rc == 0:
                break
            last = err
            if "couldn't find remote ref" in err and kind is not None:
                continue  # not a branch of that name: maybe a tag
            if spec.commit and ('not our ref' in err or 'unadvertised object' in err):
                # Some servers only serve commits by their refs: fetch those and look for the commit there.
                refspecs = refspecs[1:] or ['+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*']
                rc, dummy, err = self.git.run(base[:4] + ['origin'] + refspecs, cwd, self.identity, network=True,
                                              check=False, origin=spec.base, url=spec.url)
                if rc == 0:
                    break
            raise self._fetch_error(err)
        else:
            raise CheckoutError('%s has no branch or tag named %s' % (spec.url, spec.ref) if spec.ref
                                else 'fetch from %s failed: %s' % (spec.url, _last_lines(last or '')))
        if spec.commit:
            commit = spec.commit
            if not self._has_commit(commit, cwd):
                raise CheckoutError('commit %s does not exist in %s' % (commit, spec.url))
        elif kind == 'branch':
            commit = self._git(['rev-parse', 'refs/remotes/origin/%s^{commit}' % name], cwd)
        elif kind == 'tag':
            commit = self._git(['rev-parse', 'refs/tags/%s^{commit}' % name], cwd)
        else:
            commit = self._git(['rev-parse', 'FETCH_HEAD^{commit}'], cwd)
        return commit, kind, name

    def _fetch_bundle(self, cwd):
        """transport=controller: fetch the commit (and the ref the controller named in full) from the bundle file."""
        spec = self.spec
        if not spec.bundle:
            raise NeedsObjects(self._haves(), False)
        if not spec.commit:
            raise ValidationError('transport=controller needs commit for %s (the action plugin resolves it)' % spec.url)
        git_dir = os.path.join(cwd, '.git') if os.path.isdir(os.path.join(cwd, '.git')) else cwd
        work = None
        try:
            path, work = self._lend(spec.bundle)
            if spec.bundle_shallow:
                # A shallow bundle's oldest commits have parents that are not in it: git must know they are cut off.
                shallow = os.path.join(git_dir, 'shallow')
                known = set((read_text(shallow) or '').split())
                with open(shallow, 'a', encoding='utf-8') as handle:
                    handle.write(''.join(c + '\n' for c in spec.bundle_shallow if c not in known))
                if self.identity is not None and self.identity.differs():
                    os.chown(shallow, self.identity.uid, self.identity.gid)
            kind, name = spec.ref_kinds[0] if spec.ref_kinds else (None, None)
            refspecs = [spec.commit]
            if kind == 'branch':
                refspecs.append('+refs/heads/%s:refs/remotes/origin/%s' % (name, name))
            elif kind == 'tag':
                refspecs.append('+refs/tags/%s:refs/tags/%s' % (name, name))
            rc, dummy, err = self.git.run(['fetch', '--quiet', '--no-tags', '--no-recurse-submodules', path] + refspecs,
                                          cwd, self.identity, check=False)
        except OSError as exc:
            raise CheckoutError('cannot read the bundle %s sent by the controller: %s' % (spec.bundle, exc.strerror or exc))
        finally:
            if work:
                remove_tree(work)
        if rc != 0:
            raise GitError('fetch from the bundle sent by the controller failed: %s' % (_last_lines(err) or 'no output'), err)
        if not self._has_commit(spec.commit, cwd):
            raise CheckoutError('the bundle sent by the controller does not hold commit %s' % spec.commit)
        return spec.commit, kind, name

    def _haves(self):
        """Commits this checkout has from the remote (or from an earlier run): the base of an incremental bundle."""
        if not os.path.isdir(os.path.join(self.spec.dest, '.git')):
            return []
        tips = [self._try(['rev-parse', '--verify', '--quiet', 'HEAD^{commit}']) or '']
        tips += (self._try(['for-each-ref', '--format=%(objectname)', UPSTREAM_REF, 'refs/remotes/', 'refs/tags/',
                            'refs/heads/']) or '').split()
        unique = []
        for tip in tips:
            if tip and tip not in unique:
                unique.append(tip)
        return unique[:100]

    def _lend(self, path):
        """The file at path, readable by the user git runs as: (path for git, temporary directory to remove or None)."""
        if self.identity is None or not self.identity.differs():
            return path, None
        work = tempfile.mkdtemp(prefix='codeferry-bundle-')
        os.chown(work, self.identity.uid, self.identity.gid)
        copy = os.path.join(work, 'objects.bundle')
        shutil.copyfile(path, copy)
        os.chown(copy, self.identity.uid, self.identity.gid)
        return copy, work

    def _fetch_error(self, err):
        spec = self.spec
        lowered = err.lower()
        if 'not our ref' in lowered or 'unadvertised object' in lowered:
            return CheckoutError('commit %s does not exist in %s (or no branch or tag reaches it)' % (spec.commit, spec.url))
        if 'authentication failed' in lowered or 'could not read username' in lowered or 'http 401' in lowered \
                or 'http 403' in lowered or ' 403' in lowered:
            hint = ''
            credential = self.git.credential
            if self.options.get('flavor', CLOUD) == CLOUD and credential is not None and credential.kind == 'token' \
                    and '/scm/' in urlsplit(spec.url).path:
                # A Cloud token goes as x-token-auth, which Data Center refuses with a bare 401.
                hint = "; the URL looks like Bitbucket Data Center's (/scm/): set flavor: datacenter"
            return CheckoutError('%s refused the credentials (wrong or expired token, or no read access to the repository)%s: %s'
                                 % (spec.url, hint, _last_lines(err)))
        if 'not found' in lowered and 'remote ref' not in lowered:
            return CheckoutError('%s: repository not found, or these credentials cannot read it: %s' % (spec.url, _last_lines(err)))
        return GitError('git fetch from %s failed: %s' % (spec.url, _last_lines(err) or 'no output'), err)

    def _probe(self, dest):
        """Check mode: fetch into a throwaway repository so that nothing in dest changes.

        With dest, the throwaway one borrows its objects (alternates), so the work tree can be
        compared with the fetched commit. Returns (commit, kind, name[, objects dir]).
        """
        work = tempfile.mkdtemp(prefix='codeferry-probe-')
        try:
            probe = os.path.join(work, 'probe.git')
            if self.identity is not None and self.identity.differs():
                os.chown(work, self.identity.uid, self.identity.gid)
            init = ['init', '--quiet', '--bare']
            if self.spec.commit and len(self.spec.commit) == 64:
                init.append('--object-format=sha256')
            self.git.out(init + [probe], work, self.identity)
            if dest:
                with open(os.path.join(probe, 'objects', 'info', 'alternates'), 'w', encoding='utf-8') as handle:
                    handle.write(os.path.join(dest, '.git', 'objects') + '\n')
            self.git.out(['config', 'remote.origin.url', self.spec.url], probe, self.identity)
            try:
                commit, kind, name = self._fetch(probe, depth=1)
            except GitError as exc:
                raise CheckoutError('fetch of %s failed (check mode): %s' % (self.spec.url, exc))
        except BaseException:
            remove_tree(work)
            raise
        if dest is None:
            remove_tree(work)
            return commit, kind, name
        return commit, kind, name, probe

    # -- changing the checkout

    def _checkout(self, cwd, commit, kind, name, force):
        args = ['checkout', '--quiet', '--no-recurse-submodules']
        if force:
            args.append('--force')
        if kind == 'branch':
            self._git(args + ['-B', name, commit], cwd)
            # The owner's later "git pull" follows the branch.
            self._git(['config', 'branch.%s.remote' % name, 'origin'], cwd)
            self._git(['config', 'branch.%s.merge' % name, 'refs/heads/' + name], cwd)
        else:
            self._git(args + ['--detach', commit], cwd)
        self._git(['update-ref', UPSTREAM_REF, commit], cwd)

    def _backup(self, parents, in_the_way, target):
        """Save the work tree (untracked files included) as a commit under refs/codeferry/backup/<UTC time>."""
        dest = self.spec.dest
        git_dir = os.path.join(dest, '.git')
        index = os.path.join(git_dir, 'codeferry-backup-index')
        if os.path.exists(os.path.join(git_dir, 'index')):
            shutil.copyfile(os.path.join(git_dir, 'index'), index)
            if self.identity is not None and self.identity.differs():
                os.chown(index, self.identity.uid, self.identity.gid)
        env = dict(_BACKUP_IDENTITY, GIT_INDEX_FILE=index)
        try:
            self._git(['add', '--all', '--', '.'], env=env)
            paths = [path.rstrip('/') for path in in_the_way]
            if paths:
                self._git(['add', '--force', '--'] + paths, env=env)
            tree = self._git(['write-tree'], env=env)
        finally:
            if os.path.exists(index):
                os.unlink(index)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        ref = BACKUP_PREFIX + stamp
        suffix = 1
        while self._ref_exists(ref):
            suffix += 1
            ref = '%s%s-%d' % (BACKUP_PREFIX, stamp, suffix)
        message = ('Local work saved by codeferry.bitbucket.git_checkout before checking out %s\n\n'
                   'Files: git restore --source=%s -- <paths>\nCommits: git branch rescued %s^\n'
                   'Everything, elsewhere: git worktree add --detach <dir> %s\n' % (target, ref, ref, ref))
        args = ['commit-tree', tree]
        for parent in parents:
            args.extend(('-p', parent))
        commit = self._git(args + ['-m', message], env=_BACKUP_IDENTITY)
        self._git(['update-ref', ref, commit])
        return ref

    def _sync_credentials(self, cwd):
        """Make the credential left in the checkout match the mode; True if anything was (or would be) written.

        store keeps a git-credential-store file and a helper pointing at it, or, for a Bearer token, AUTH_FILE
        and an include.path of it; whatever the other kinds or modes left is removed."""
        spec = self.spec
        mode = self.options['credential_mode']
        credential = self.git.credential
        git_dir = os.path.join(cwd, '.git')
        store_path = os.path.join(git_dir, STORE_FILE)
        auth_path = os.path.join(git_dir, AUTH_FILE)
        final_store = os.path.join(spec.dest, '.git', STORE_FILE)
        helper_key = 'credential.%s.helper' % spec.base
        helper_value = 'store --file ' + shlex.quote(final_store)
        changed = False
        dry = self.check_mode

        rc, out, dummy = self.git.run(['config', '--local', '--get-regexp', r'^credential\..*\.helper$'], cwd,
                                      self.identity, check=False)
        ours = []
        for line in out.splitlines():
            key, dummy, value = line.partition(' ')
            if STORE_FILE in value:
                ours.append((key, value))
        rc, out, dummy = self.git.run(['config', '--local', '--get-all', 'include.path'], cwd, self.identity, check=False)
        includes = [line for line in out.splitlines() if line == AUTH_FILE]
        store = mode == 'store' and credential is not None and not credential.header_only
        header = mode == 'store' and credential is not None and credential.header_only
        wanted = {store_path: credential.store_line(spec.base) if store else None,
                  auth_path: credential.auth_config(spec.base) if header else None}
        for path, text in wanted.items():
            if text is not None:
                changed = self._write_secret_file(path, text) or changed
            elif os.path.lexists(path):
                changed = True
                if not dry:
                    os.unlink(path)
        # git prints section and variable names in lower case, as helper_key has them.
        if ours != ([(helper_key, helper_value)] if store else []):
            changed = True
            if not dry:
                for key, value in ours:
                    self._git(['config', '--local', '--fixed-value', '--unset-all', key, value], cwd)
                if store:
                    self._git(['config', '--local', '--add', helper_key, helper_value], cwd)
        if includes != ([AUTH_FILE] if header else []):
            changed = True
            if not dry:
                if includes:
                    self._git(['config', '--local', '--fixed-value', '--unset-all', 'include.path', AUTH_FILE], cwd)
                if header:
                    # Relative: git reads it from the directory of .git/config, so a moved checkout keeps working.
                    self._git(['config', '--local', '--add', 'include.path', AUTH_FILE], cwd)
        if self.options['ca_path']:
            ca_key = 'http.%s.sslCAInfo' % spec.base
            if self._try(['config', '--local', '--get', ca_key], cwd) != self.options['ca_path'] and not dry:
                self._git(['config', '--local', ca_key, self.options['ca_path']], cwd)

        current = self._try(['config', '--local', '--get', 'remote.origin.url'], cwd)
        wanted_url = credential.url_with(spec.url) if mode == 'url' and credential is not None else spec.url
        if current != wanted_url:
            changed = True
            if not dry:
                self._set_origin_url(cwd, wanted_url)
        return changed

    def _write_secret_file(self, path, text):
        """Keep text in path: mode 0600, owned by the checkout's owner, a regular file (a link is replaced, never followed)."""
        owner = self.identity
        uid = owner.uid if owner is not None and owner.differs() else -1
        gid = owner.gid if owner is not None and owner.differs() else -1
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600 \
                and uid in (-1, info.st_uid) and gid in (-1, info.st_gid) and read_text(path) == text:
            return False
        if not self.check_mode:
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise CheckoutError('%s is a directory; remove it so that the credential can be kept there' % path)
            write_private(path, text, uid, gid)
        return True

    def _set_origin_url(self, cwd, url):
        if '@' not in urlsplit(url).netloc:
            self._git(['config', '--local', 'remote.origin.url', url], cwd)
            return
        # The token must not be on git's command line: git writes a placeholder, then this
        # process swaps it for the real URL in .git/config.
        placeholder = 'codeferry-placeholder-%s' % base64.b32encode(os.urandom(10)).decode('ascii').lower()
        parts = urlsplit(url)
        self._git(['config', '--local', 'remote.origin.url',
                   urlunsplit((parts.scheme, placeholder + '@' + parts.netloc.rpartition('@')[2], parts.path, '', ''))], cwd)
        config_path = os.path.join(cwd, '.git', 'config')
        text = read_text(config_path)
        if text is None or text.count(placeholder) != 1:
            raise CheckoutError('cannot write the remote URL into %s' % config_path)
        info = os.stat(config_path)
        userinfo = parts.netloc.rpartition('@')[0]
        # 0600 from now on: the file holds the token (git keeps the mode when it rewrites the file).
        write_private(config_path, text.replace(placeholder, userinfo), info.st_uid, info.st_gid)


def redact_userinfo(url):
    try:
        parts = urlsplit(url)
    except ValueError:
        return '<invalid URL>'
    return urlunsplit((parts.scheme, parts.netloc.rpartition('@')[2], parts.path, '', ''))


# --- archives -----------------------------------------------------------------------------------


AT_FDCWD = -100
RENAME_EXCHANGE = 2


def exchange(one, other):
    """Swap two directories in one step (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(one), AT_FDCWD, os.fsencode(other), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code))


def _member_path(name):
    """The relative path of a tar member, or None when it must be refused."""
    if not name or '\0' in name or name.startswith('/'):
        return None
    parts = [part for part in name.split('/') if part not in ('', '.')]
    if not parts or '..' in parts:
        return None
    return '/'.join(parts)


def safe_extract(fileobj, root):
    """Unpack a .tar.gz into the empty directory root; CheckoutError when it is unsafe or unreadable."""
    try:
        return _extract(fileobj, root)
    except OSError as exc:
        raise CheckoutError('cannot unpack the archive: %s' % (exc.strerror or exc))


def _extract(fileobj, root):
    """Refuse anything in the archive that could reach outside root.

    Refused: absolute paths, '..', links that point outside root (checked again after every link
    exists, so chains of links cannot escape), device files and FIFOs. Bitbucket's single
    top-level directory is taken off. Files get 0644, or 0755 when executable; owners in the
    archive are ignored. Returns the number of files.
    """
    try:
        archive = tarfile.open(fileobj=fileobj, mode='r:gz')
        members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CheckoutError('the download is not a readable .tar.gz archive: %s' % exc)
    with archive:
        paths = []
        for member in members:
            path = _member_path(member.name)
            if path is None:
                raise CheckoutError('unsafe archive: member %r has an absolute path or ".."' % member.name)
            paths.append(path)
        tops = set(path.split('/', 1)[0] for path in paths)
        strip = len(tops) == 1 and all('/' in path or members[i].isdir() for i, path in enumerate(paths))
        plan = []
        seen = set()
        for member, path in zip(members, paths):
            if strip:
                path = path.split('/', 1)[1] if '/' in path else ''
                if not path:
                    continue
            if path in seen:
                raise CheckoutError('unsafe archive: %s appears twice' % path)
            seen.add(path)
            if member.ischr() or member.isblk() or member.isfifo() or not (member.isreg() or member.isdir()
                                                                           or member.issym() or member.islnk()):
                raise CheckoutError('unsafe archive: %s is a device file or another special file' % path)
            if member.issym() or member.islnk():
                target = member.linkname
                if member.issym():
                    if not target or target.startswith('/'):
                        raise CheckoutError('unsafe archive: link %s points outside dest (%s)' % (path, target))
                    resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
                else:
                    resolved = _member_path(target)
                    if resolved and strip:
                        resolved = resolved.split('/', 1)[1] if '/' in resolved else None
                if resolved is None or resolved == '..' or resolved.startswith('../') or os.path.isabs(resolved):
                    raise CheckoutError('unsafe archive: link %s points outside dest (%s)' % (path, target))
                if member.islnk():
                    target = resolved
            plan.append((member, path, target if (member.issym() or member.islnk()) else None))

        files = 0
        # Directories and files first, links last: no write ever goes through a link.
        for member, path, target in plan:
            full = os.path.join(root, path)
            if member.isdir():
                os.makedirs(full, mode=0o755, exist_ok=True)
            elif member.isreg():
                os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
                source = archive.extractfile(member)
                mode = 0o755 if member.mode & 0o111 else 0o644
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                with os.fdopen(fd, 'wb') as handle:
                    shutil.copyfileobj(source, handle)
                os.chmod(full, mode)
                files += 1
        real_root = os.path.realpath(root)

        def inside(candidate):
            resolved = os.path.realpath(candidate)
            return resolved == real_root or resolved.startswith(real_root + os.sep)

        for member, path, target in plan:
            full = os.path.join(root, path)
            if (member.issym() or member.islnk()) and not inside(os.path.dirname(full)):
                raise CheckoutError('unsafe archive: %s would be created through a link that leads outside dest' % path)
            if member.issym():
                os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
                os.symlink(member.linkname, full)
            elif member.islnk():
                source = os.path.join(root, target)
                if not os.path.isfile(source) or os.path.islink(source):
                    raise CheckoutError('unsafe archive: hard link %s points at %s, which is not a file of the archive'
                                        % (path, target))
                os.link(source, full)
                files += 1
        for member, path, target in plan:
            if member.issym():
                if not inside(os.path.join(root, path)):
                    raise CheckoutError('unsafe archive: link %s resolves outside dest' % path)
    return files


_DC_CLONE_PATH = re.compile(r'^(?P<context>(?:/[^/]+)*?)/scm/(?P<owner>[^/]+)/(?P<slug>[^/]+?)(?:\.git)?/*$')


def datacenter_archive_url(url, commit):
    """The Data Center archive of commit, from the clone URL <base>/scm/<project key>/<slug>.git.

    The base may have a context path (https://host/bitbucket/scm/ops/deploy.git). A personal
    repository (/scm/~user/slug.git) is under /users/<user>; a project key is upper-cased, as the REST
    API names it."""
    parts = urlsplit(url)
    match = _DC_CLONE_PATH.match(parts.path)
    if not match or match.group('owner') in ('~', '.', '..') or match.group('slug') in ('.', '..', '.git'):
        raise CheckoutError('url %s is not a Bitbucket Data Center clone URL (https://host[/context]/scm/<project>/'
                            '<repository>.git), so its archive cannot be found; check the URL, or use method=git'
                            % url)
    owner, slug = match.group('owner'), match.group('slug')
    if owner.startswith('~'):
        where = 'users/%s' % quote(owner[1:], safe='')
    else:
        where = 'projects/%s' % quote(owner.upper(), safe='')
    path = '%s/rest/api/latest/%s/repos/%s/archive' % (match.group('context'), where, quote(slug, safe=''))
    return urlunsplit((parts.scheme, parts.netloc, path, 'at=%s&format=tar.gz' % commit, ''))


class ArchiveCheckout(object):
    """method=archive: a snapshot of the commit, for hosts without git."""

    def __init__(self, spec, options, credential, http_factory):
        self.spec = spec
        self.options = options
        self.credential = credential
        self.http_factory = http_factory
        self.uid, self.gid = options['uid'], options['gid']
        self.check_mode = options['check_mode']
        self.result = new_result(spec.dest, spec.url, 'archive', spec.ref, spec.commit)

    def archive_url(self):
        if self.options.get('flavor') == DATACENTER:
            return datacenter_archive_url(self.spec.url, self.spec.commit)
        parts = urlsplit(self.spec.url)
        path = parts.path.rstrip('/')
        if path.endswith('.git'):
            path = path[:-4]
        return urlunsplit((parts.scheme, parts.netloc, '%s/get/%s.tar.gz' % (path, self.spec.commit), '', ''))

    def apply(self):
        spec = self.spec
        if not spec.commit:
            raise CheckoutError('method=archive needs commit (a full hash): an archive of a moving ref cannot be kept up to date')
        state = inspect_dest(spec.dest)
        if state == 'git':
            raise CheckoutError('dest %s holds a git checkout; remove it to use method=archive' % spec.dest)
        if state == 'other':
            raise CheckoutError('dest %s exists, is not empty and was not made with method=archive; move it away or pick '
                                'another dest' % spec.dest)
        if state == 'archive':
            marker = self._marker()
            if not same_repository(marker.get('url', ''), spec.url):
                raise CheckoutError('dest %s holds an archive of another repository (%s), not %s'
                                    % (spec.dest, marker.get('url'), spec.url))
            self.result['before'] = marker.get('commit')
            if marker.get('commit') == spec.commit:
                self.result['action'] = 'unchanged'
                changed = apply_ownership(spec.dest, self.uid, self.gid, self.check_mode)
                changed = apply_mode(spec.dest, self.options['mode'], self.check_mode) or changed
                self.result['changed'] = changed
                return self.result
        self.result['action'] = 'cloned' if state in ('absent', 'empty') else 'updated'
        self.result['changed'] = True
        if self.check_mode:
            return self.result
        body = self.download()
        tmp = make_temp_beside(spec.dest, 'archive')
        try:
            safe_extract(io.BytesIO(body), tmp)
            marker = json.dumps({'commit': spec.commit, 'url': spec.url}, sort_keys=True) + '\n'
            with open(os.path.join(tmp, ARCHIVE_MARKER), 'w', encoding='utf-8') as handle:
                handle.write(marker)
            apply_ownership(tmp, self.uid, self.gid)
            os.chmod(tmp, self.options['mode'] if self.options['mode'] is not None else 0o755)
            self._swap(tmp)
        finally:
            remove_tree(tmp)
        return self.result

    def _marker(self):
        try:
            with open(os.path.join(self.spec.dest, ARCHIVE_MARKER), encoding='utf-8') as handle:
                marker = json.load(handle)
        except (OSError, ValueError):
            marker = None
        if not isinstance(marker, dict):
            raise CheckoutError('dest %s has an unreadable %s; remove dest to download it again' % (self.spec.dest, ARCHIVE_MARKER))
        return marker

    def download(self):
        if self.options.get('transport') == 'controller':
            # No network here: the controller sends the archive it downloaded once for the whole fleet.
            if not self.spec.archive:
                raise NeedsObjects([], self.result['action'] == 'cloned')
            try:
                with open(self.spec.archive, 'rb') as handle:
                    body = handle.read()
            except OSError as exc:
                raise CheckoutError('cannot read the archive %s sent by the controller: %s'
                                    % (self.spec.archive, exc.strerror or exc))
            if body[:2] != b'\x1f\x8b':
                raise CheckoutError('the archive sent by the controller is not a .tar.gz file')
            return body
        url = self.archive_url()
        headers = {'Accept': 'application/x-gzip, application/octet-stream'}
        if self.credential is not None:
            headers['Authorization'] = self.credential.authorization()
        try:
            status, dummy, body = self.http_factory().request('GET', url, headers=headers)
        except BitbucketError as exc:
            if exc.status is None or not 300 <= exc.status < 400:
                raise
            status, body = exc.status, b''
        if status == 200 and body[:2] == b'\x1f\x8b':
            return body
        if status == 200:
            raise CheckoutError('GET %s: the answer is not a .tar.gz archive (a login page?)' % url)
        if status in (301, 302, 303, 307, 308):
            raise CheckoutError('GET %s: HTTP %d redirect, not followed (Bitbucket redirects to its login page when the '
                                'credentials are not accepted)' % (url, status))
        if status in (401, 403):
            raise CheckoutError('GET %s: HTTP %d: the credentials were refused, or lack read access to the repository'
                                % (url, status))
        if status == 404:
            raise CheckoutError('GET %s: HTTP 404: no such repository or commit, or no access to it' % url)
        raise CheckoutError('GET %s: HTTP %d' % (url, status))

    def _swap(self, tmp):
        dest = self.spec.dest
        if not os.path.lexists(dest):
            os.rename(tmp, dest)
            return
        if os.path.isdir(dest) and not os.listdir(dest):
            os.rename(tmp, dest)
            return
        if exchange(tmp, dest):
            return  # tmp now holds the old tree; the caller removes it
        old = tmp + '-old'
        os.rename(dest, old)
        os.rename(tmp, dest)
        remove_tree(old)


# --- all repositories ------------------------------------------------------------------------


def diff_of(result):
    """--diff: the commit before and after, per repository; a refused or failed one stays as it was."""
    header = '%s (%s)' % (result['dest'], result['url'])
    before = 'absent\n' if result['action'] == 'cloned' or result['before'] is None else 'commit: %s\n' % result['before']
    after = before if result['action'] in ('refused', 'failed') else 'commit: %s\n' % result['after']
    return {'before_header': header, 'after_header': header, 'before': before, 'after': after}


def summary(result):
    """One secret-free line per repository, for reports."""
    short = (result.get('after') or '')[:12] or '-'
    if result['failed']:
        return '%s: %s: %s' % (result.get('dest'), result['action'], result['msg'])
    text = '%s: %s at %s' % (result['dest'], result['action'], short)
    if result.get('backup_ref'):
        text += ', local work saved in %s' % result['backup_ref']
    if result.get('credential_refreshed'):
        text += ', credential refreshed'
    return text


def checkout_repositories(params, check_mode=False, http_factory=None, environ=None):
    """Check out every entry of params['repositories']; returns (results, changed, failures, diffs)."""
    transport = params.get('transport') or 'direct'
    if transport not in TRANSPORTS:
        raise ValidationError('transport must be one of %s' % ', '.join(TRANSPORTS))
    # With transport=controller the credential stays on the controller; the host never needs it.
    credential = Credential.from_params(params) if transport == 'direct' else None
    if params.get('credential_mode', 'store') not in MODES:
        raise ValidationError('credential_mode must be one of %s' % ', '.join(MODES))
    if params.get('method', 'git') not in METHODS:
        raise ValidationError('method must be one of %s' % ', '.join(METHODS))
    flavor = params.get('flavor') or CLOUD
    if flavor not in FLAVORS:
        raise ValidationError('flavor must be one of %s, got %r' % (', '.join(FLAVORS), flavor))
    if credential is not None and credential.header_only and params.get('credential_mode') == 'url' \
            and params.get('method', 'git') == 'git':
        # Refused before any repository is touched: no checkout is left half-way between two modes.
        raise ValidationError('credential_mode=url cannot be used with flavor=datacenter and access_token: git cannot '
                              'carry a Bearer token in a URL (Data Center accepts project and repository tokens only as '
                              '"Authorization: Bearer"). Use credential_mode=store or ephemeral, or give a personal '
                              'access token as username and password')
    uid, gid = resolve_owner(params.get('owner'), params.get('group'))
    options = {'check_mode': check_mode, 'force': bool(params.get('force')), 'uid': uid, 'gid': gid,
               'mode': parse_mode(params.get('mode')), 'credential_mode': params.get('credential_mode', 'store'),
               'ca_path': params.get('ca_path'), 'transport': transport, 'flavor': flavor}
    ca_changed, git_ca_path = False, options['ca_path']
    if params.get('ca_content') is not None:
        ca_changed, git_ca_path = install_ca(options['ca_path'], params['ca_content'], check_mode)
    try:
        if git_ca_path and not os.path.isfile(git_ca_path):
            raise ValidationError('ca_path %s is not a file' % git_ca_path)
        git = GitRunner(credential, ca_path=git_ca_path, validate_certs=params.get('validate_certs', True),
                        timeout=params.get('timeout'), environ=environ)
        results, changed, failures, diffs = _checkout_all(params, options, credential, git, http_factory)
    finally:
        if git_ca_path != options['ca_path']:
            os.unlink(git_ca_path)
    return results, changed or ca_changed, failures, diffs


def _checkout_all(params, options, credential, git, http_factory):
    """checkout_repositories for each entry, with the options and the git runner it set up."""
    secrets = git.secrets()
    results, failures, diffs = [], [], []
    seen = set()
    entries = params.get('repositories') or []
    if not entries:
        raise ValidationError('repositories is empty: give at least one {url, dest, commit or ref}')
    for index, entry in enumerate(entries):
        result = new_result(entry.get('dest') if isinstance(entry, dict) else None, None, params.get('method', 'git'),
                            action='failed')
        worker = None
        try:
            spec = RepoSpec(entry, params.get('root'))
            result.update(dest=spec.dest, url=spec.url, ref=spec.ref, after=spec.commit)
            if spec.dest in seen:
                raise ValidationError('dest %s is given twice' % spec.dest)
            seen.add(spec.dest)
            if params.get('method', 'git') == 'archive':
                worker = ArchiveCheckout(spec, options, credential, http_factory)
            else:
                worker = GitCheckout(spec, options, git)
            result = worker.apply()
            result['failed'] = False
        except NeedsObjects as exc:
            # Not a failure: the action plugin sends a bundle (or an archive) and runs the module again.
            result = worker.result
            result.update(action='needs_objects', failed=False, changed=False, have=exc.have, new=exc.new)
        except BitbucketError as exc:
            if worker is not None:
                result = worker.result
            result['failed'] = True
            if result.get('action') in (None, 'cloned', 'updated', 'unchanged'):
                result['action'] = 'refused' if getattr(exc, 'local_work', None) else 'failed'
            result['changed'] = bool(result.get('backup_ref'))
            result['msg'] = redact(str(exc), secrets)
            if getattr(exc, 'local_work', None):
                result['local_work'] = exc.local_work
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever went wrong with one repository, the others still get their turn.
            if worker is not None:
                result = worker.result
            result.update(failed=True, action='failed', changed=False,
                          msg=redact('unexpected error (please report it): %s: %s' % (type(exc).__name__, exc), secrets))
        result['summary'] = summary(result)
        if result['failed']:
            failures.append('%s: %s' % (result.get('dest') or 'repositories[%d]' % index, result['msg']))
        results.append(result)
        diffs.append(diff_of(result))
    changed = any(result['changed'] for result in results)
    return results, changed, failures, diffs
