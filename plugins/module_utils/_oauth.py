# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""OAuth 2.0 token endpoint grants and the on-disk token cache.

The cache exists so that a playbook run (or fifty forks of it) asks Bitbucket for one token,
not one per task or host: Bitbucket rate-limits per OAuth consumer.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import hashlib
import hmac
import json
import math
import os
import re
import stat
import time

from urllib.parse import urlencode, urlsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import error_message
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    CacheError,
    ProtocolError,
    TokenRequestError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import (
    CLOUD,
    DATACENTER,
    RetryPolicy,
    api_flavor,
    datacenter_base,
    decode_body,
    gave_up_note,
    has_control_chars,
    quote_server_text,
    safe_url,
    send_with_retries,
    validate_url,
)

DEFAULT_TOKEN_URL = 'https://bitbucket.org/site/oauth2/access_token'
# Data Center's OAuth 2.0 provider (incoming application links), below the base URL of the instance.
DATACENTER_TOKEN_PATH = '/rest/oauth2/latest/token'
_DATACENTER_TOKEN_RE = re.compile(r'/rest/oauth2/(?:latest|1\.0)/token/*$')
# RFC 7636: 43 to 128 characters of the unreserved set.
_CODE_VERIFIER_RE = re.compile(r'^[A-Za-z0-9._~-]{43,128}$')
DEFAULT_CACHE_DIR = '~/.cache/codeferry.bitbucket/tokens'
CACHE_DIR_ENV = 'BITBUCKET_TOKEN_CACHE_DIR'
GRANT_TYPES = ('client_credentials', 'refresh_token', 'authorization_code')
# Grants whose tokens act as the user who authorized the consumer, not as the consumer itself.
USER_GRANTS = ('refresh_token', 'authorization_code')
CONSUMER = 'consumer'
DEFAULT_CACHE_ENTRY = 'default'
MAX_MIN_TTL = 86400  # a bound against typos; Bitbucket tokens live 7200 s, so 7200 or more renews on every run
CACHE_FORMAT = 2
LOCK_TIMEOUT = 120.0
# A cache file is well under 4 KiB; the bound keeps a planted huge file or device from eating memory.
MAX_CACHE_BYTES = 64 * 1024
# Anything later (the year 2242) is a corrupt file, and time.gmtime() would overflow on it.
MAX_EXPIRES_AT = 2 ** 33
MAX_EXPIRES_IN = 10 * 365 * 86400
SECRET_CHECK_ITERATIONS = 10000

# Token endpoint answers meaning "this refresh token is no good", which Bitbucket sends as
# invalid_request (not the RFC's invalid_grant).
REFRESH_REJECTED = frozenset(('invalid_request', 'invalid_grant'))

_ENTRY_NAME_RE = re.compile(r'^[A-Za-z0-9_.@+-]{1,64}$')
_CACHE_FILE_RE = re.compile(r'^[0-9a-f]{64}\.json$')
_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC


def token_endpoint(token_url=None, api_url=None):
    """(token URL, flavour) of the token endpoint the options name: the one place that decides.

    The endpoint is Data Center's when token_url's path is its OAuth 2.0 token path, or when
    api_url is a Data Center REST root; without token_url it is then
    <base>/rest/oauth2/latest/token. Otherwise it is Bitbucket Cloud's, by default its public URL.
    """
    datacenter_api = api_flavor(api_url) == DATACENTER
    if token_url:
        try:
            path = urlsplit(token_url.strip()).path if isinstance(token_url, str) else ''
        except ValueError:
            path = ''  # validate_url() gives the clear error later
        # A token URL behind a proxy path still belongs to the Data Center that api_url names.
        return token_url, DATACENTER if _DATACENTER_TOKEN_RE.search(path) or datacenter_api else CLOUD
    if datacenter_api:
        # The derived URL is only as good as api_url: name that option when it is wrong.
        validate_url('api_url', api_url)
        return datacenter_base(api_url) + DATACENTER_TOKEN_PATH, DATACENTER
    return DEFAULT_TOKEN_URL, CLOUD


DATACENTER_CREDENTIAL_ADVICE = (
    'use an HTTP access token instead (a personal, project or repository token) as access_token or in '
    'BITBUCKET_ACCESS_TOKEN; or authorize once in a browser with the codeferry.bitbucket.authorize playbook '
    'and then get tokens with codeferry.bitbucket.oauth_token and grant_type refresh_token')


def refuse_client_credentials(flavor, token_url):
    """Fail before any request when the client_credentials grant goes to Data Center, which would only refuse it."""
    if flavor == DATACENTER:
        raise ValidationError('Bitbucket Data Center has no client_credentials grant (its OAuth 2.0 provider offers '
                              'only the authorization code flow), so no token was requested from %s: %s'
                              % (safe_url(token_url), DATACENTER_CREDENTIAL_ADVICE))


def validate_code_verifier(value):
    """The PKCE code_verifier as RFC 7636 defines it; the message never quotes it."""
    if not isinstance(value, str) or not _CODE_VERIFIER_RE.match(value):
        if not isinstance(value, str):
            what = 'a %s' % type(value).__name__
        elif 43 <= len(value) <= 128:
            what = 'a character outside that set'
        else:
            what = '%d characters' % len(value)
        raise ValidationError('code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9 and -._~ (RFC 7636), '
                              'got %s' % what)
    return value


def validate_min_ttl(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= MAX_MIN_TTL:
        raise ValidationError('min_ttl must be a whole number of seconds from 0 to %d, got %r' % (MAX_MIN_TTL - 1, value))
    return value


def principal_for(grant_type, cache_entry=None):
    """Whose tokens a grant gives: the consumer itself, or the user of a named cache entry."""
    if grant_type not in USER_GRANTS:
        if cache_entry:
            raise ValidationError('cache_entry names the cache entry of a user token; grant_type=client_credentials '
                                  'acts as the OAuth consumer, which has one entry of its own')
        return CONSUMER
    name = cache_entry or DEFAULT_CACHE_ENTRY
    if not isinstance(name, str) or not _ENTRY_NAME_RE.match(name):
        raise ValidationError("cache_entry must be 1 to 64 letters, digits or '_.@+-', got %r" % (name,))
    return 'user:' + name


def parse_scopes(payload):
    """Scopes from a token response: 'scope' (2026 and RFC 6749) first, then Bitbucket's 'scopes'."""
    for key in ('scope', 'scopes'):
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            return [item for item in value.replace(',', ' ').split() if item]
        if isinstance(value, (list, tuple)):
            return [str(item) for item in value if str(item).strip()]
        raise ProtocolError('the token response has a %s field of type %s' % (key, type(value).__name__))
    return []


def iso8601(epoch):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))


def secret_check(secret, salt=None):
    """A salted hash that binds a cache entry to the client secret that minted it, without storing the secret."""
    salt = salt or binascii.hexlify(os.urandom(16)).decode('ascii')
    digest = hashlib.pbkdf2_hmac('sha256', secret.encode('utf-8'), binascii.unhexlify(salt), SECRET_CHECK_ITERATIONS)
    return {'salt': salt, 'hash': binascii.hexlify(digest).decode('ascii')}


def _credential(value):
    # Access and refresh tokens go into headers and form bodies: no whitespace or control characters.
    return isinstance(value, str) and 0 < len(value) <= 4096 and not has_control_chars(value)


def _hex(value, length):
    return isinstance(value, str) and len(value) == length and all(c in '0123456789abcdef' for c in value)


def _number(value, upper):
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value < upper)


class Token(object):
    """An access token plus what we know about it; the shape of one cache file."""

    FIELDS = ('access_token', 'token_type', 'expires_at', 'scopes', 'refresh_token', 'token_url', 'client_id',
              'principal', 'grant_type', 'secret_check')

    # What a cache file must hold: it is validated as strictly as an answer from the network.
    _CACHE_CHECKS = (
        ('access_token', _credential),
        ('token_type', lambda v: isinstance(v, str) and len(v) <= 64 and not has_control_chars(v)),
        ('expires_at', lambda v: _number(v, MAX_EXPIRES_AT)),
        ('scopes', lambda v: isinstance(v, list) and all(isinstance(s, str) and len(s) <= 256 for s in v)),
        ('refresh_token', lambda v: v is None or _credential(v)),
        ('grant_type', lambda v: v in GRANT_TYPES),
        ('secret_check', lambda v: isinstance(v, dict) and _hex(v.get('salt'), 32) and _hex(v.get('hash'), 64)),
    )

    def __init__(self, access_token, token_type='bearer', expires_at=0.0, scopes=None, refresh_token=None,
                 token_url=None, client_id=None, principal=None, grant_type=None, secret_check=None):
        self.access_token = access_token
        self.token_type = token_type
        self.expires_at = float(expires_at)
        self.scopes = list(scopes or [])
        self.refresh_token = refresh_token
        self.token_url = token_url
        self.client_id = client_id
        self.principal = principal
        self.grant_type = grant_type
        self.secret_check = secret_check

    def ttl(self, now=None):
        return self.expires_at - (time.time() if now is None else now)

    def expires_in(self, now=None):
        return max(int(self.ttl(now)), 0)

    def to_dict(self):
        data = dict((field, getattr(self, field)) for field in self.FIELDS)
        data['version'] = CACHE_FORMAT
        return data

    @classmethod
    def from_response(cls, payload, token_url, client_id, grant_type, issued_at):
        if not isinstance(payload, dict):
            raise ProtocolError('POST %s: the token response is not a JSON object' % safe_url(token_url))
        access_token = payload.get('access_token')
        if not isinstance(access_token, str) or not access_token:
            raise ProtocolError('POST %s: the token response has no access_token' % safe_url(token_url))
        if not _credential(access_token):
            # It goes into an Authorization header, where http.client would quote it in its error.
            raise ProtocolError('POST %s: the token response has an access_token with whitespace or control characters'
                                % safe_url(token_url))
        expires_in = payload.get('expires_in', 3600)
        try:
            expires_in = float(expires_in)
        except (TypeError, ValueError, OverflowError):
            expires_in = None
        if isinstance(payload.get('expires_in'), bool) or expires_in is None or not _number(expires_in, MAX_EXPIRES_IN):
            raise ProtocolError('POST %s: the token response has an invalid expires_in' % safe_url(token_url))
        refresh_token = payload.get('refresh_token')
        if refresh_token is not None and not _credential(refresh_token):
            raise ProtocolError('POST %s: the token response has an invalid refresh_token' % safe_url(token_url))
        try:
            scopes = parse_scopes(payload)
        except ProtocolError as exc:
            raise ProtocolError('POST %s: %s' % (safe_url(token_url), exc))
        token_type = payload.get('token_type') or 'bearer'
        if not isinstance(token_type, str) or len(token_type) > 64 or has_control_chars(token_type):
            raise ProtocolError('POST %s: the token response has an invalid token_type' % safe_url(token_url))
        return cls(access_token=access_token, token_type=token_type, expires_at=issued_at + expires_in, scopes=scopes,
                   refresh_token=refresh_token or None, token_url=token_url, client_id=client_id, grant_type=grant_type)

    @classmethod
    def from_cache(cls, data, token_url, client_id, principal):
        """A Token from parsed cache JSON, or a short reason why the data is unusable."""
        if not isinstance(data, dict):
            return None, 'not a JSON object'
        if data.get('version') != CACHE_FORMAT:
            return None, 'it is not in cache format %d' % CACHE_FORMAT
        if data.get('token_url') != token_url or data.get('client_id') != client_id or data.get('principal') != principal:
            return None, 'it belongs to another token_url, client_id or cache entry'
        for field, check in cls._CACHE_CHECKS:
            if not check(data.get(field)):
                return None, 'field %s is missing or invalid' % field
        return cls(**dict((field, data.get(field)) for field in cls.FIELDS)), None


def cache_key(token_url, client_id, principal):
    """File name stem for a consumer and principal: never derived from a secret."""
    return hashlib.sha256(('%s\0%s\0%s' % (token_url, client_id, principal)).encode('utf-8')).hexdigest()


def default_cache_dir(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR


TOKEN_CACHE = ('token cache', 'cache_dir')   # what open_private_directory's messages call the directory


def _is_link(parent_fd, name):
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _directory_error(path, exc, parent_fd, name, label):
    # Linux answers O_DIRECTORY | O_NOFOLLOW on a link with ENOTDIR, not ELOOP.
    if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_link(parent_fd, name)):
        return CacheError('the %s path %s is a symbolic link; set %s to the real directory' % (label[0], path, label[1]))
    if exc.errno == errno.ENOTDIR:
        return CacheError('the %s path %s is not a directory' % (label[0], path))
    return CacheError('cannot open the %s directory %s: %s' % (label[0], path, exc.strerror or exc))


def _open_component(parent_fd, name, path, label):
    """(fd, created) of the directory name in parent_fd, made with mode 0700 when missing; links are refused."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd), False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _directory_error(path, exc, parent_fd, name, label)
    created = True
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        created = False  # made meanwhile by someone else: opened and checked like any existing directory
    except OSError as exc:
        raise CacheError('cannot create the %s directory %s: %s' % (label[0], path, exc.strerror or exc))
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _directory_error(path, exc, parent_fd, name, label)
    if created:
        os.fchmod(fd, 0o700)  # mkdir() is subject to the umask
    return fd, created


def _check_directory(fd, path, leaf, euid, label):
    """ssh's rule for ~/.ssh: every directory on the path is ours or root's and nobody else can write it."""
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if leaf:
        if info.st_uid != euid:
            raise CacheError('the %s directory %s belongs to another user; set %s to a directory of your own'
                             % (label[0], path, label[1]))
        if mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_ISVTX):
            # A shared directory such as /tmp: others could plant a cache file. Refuse rather than chmod it.
            raise CacheError('the %s directory %s is writable by other users (mode %04o); set %s to a directory of your own'
                             % (label[0], path, mode, label[1]))
        if mode & 0o077:
            # Never chmod a directory we did not create: the option may name one that other software relies on.
            raise CacheError('the %s directory %s is open to other users (mode %04o); run chmod 700 on it or '
                             'set %s to another directory' % (label[0], path, mode, label[1]))
        return
    if info.st_uid not in (0, euid):
        raise CacheError('%s, a parent of the %s directory, belongs to another user (uid %d), who could '
                         'replace what is below it; set %s elsewhere' % (path, label[0], info.st_uid, label[1]))
    # A sticky directory such as /tmp may be a parent: others cannot rename or remove what is ours in it.
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise CacheError('%s, a parent of the %s directory, is writable by other users (mode %04o), who could '
                         'replace what is below it; set %s elsewhere' % (path, label[0], mode, label[1]))


def open_private_directory(path, create=True, label=TOKEN_CACHE):
    """An open descriptor of directory path (absolute), after the checks; None if missing and not create.

    label is (what the directory is, the option that sets it), for the messages.

    Each component is opened relative to its parent without following links, so a directory
    that someone swaps for a link after a check is never the one used.
    """
    names = [name for name in path.split(os.sep) if name]
    if not names:
        raise CacheError('the %s directory must not be /; set %s to a directory of your own' % label)
    if '\0' in path:
        # The operating system cannot take such a path; say so instead of failing inside os.open().
        raise CacheError('the %s path %r contains a NUL character; set %s to a real directory' % (label[0], path, label[1]))
    euid = os.geteuid()
    fd = os.open(os.sep, _DIR_FLAGS)
    current = ''
    try:
        for index, name in enumerate(names):
            current = '%s%s%s' % (current, os.sep, name)
            if not create:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    os.close(fd)
                    return None
                except OSError as exc:
                    raise _directory_error(current, exc, fd, name, label)
            else:
                child = _open_component(fd, name, current, label)[0]
            os.close(fd)
            fd = child
            _check_directory(fd, current, index == len(names) - 1, euid, label)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_bounded(dir_fd, name):
    """A cache file's bytes, None if there is none, or raise ValueError with the reason it cannot be used.

    Only a regular file of ours, opened without following links, and at most MAX_CACHE_BYTES.
    """
    try:
        # O_NONBLOCK: a FIFO planted as the cache file must not hang the open.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError('it is a symbolic link' if exc.errno == errno.ELOOP else 'it cannot be opened (%s)'
                         % (exc.strerror or exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError('it is not a regular file')
        if info.st_uid != os.geteuid():
            raise ValueError('it belongs to another user')
        chunks, size = [], 0
        while size <= MAX_CACHE_BYTES:
            chunk = os.read(fd, MAX_CACHE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CACHE_BYTES:
            raise ValueError('it is larger than %d bytes' % MAX_CACHE_BYTES)
        return b''.join(chunks)
    finally:
        os.close(fd)


class TokenCache(object):
    """One JSON file per (token_url, client_id, principal), mode 0600 in a 0700 directory, with a lock file.

    Every file is opened relative to one descriptor of the checked directory, never by path.
    """

    def __init__(self, directory, token_url, client_id, principal=CONSUMER, lock_timeout=LOCK_TIMEOUT):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.token_url = token_url
        self.client_id = client_id
        self.principal = principal
        self.key = cache_key(token_url, client_id, principal)
        self.name = self.key + '.json'
        self.lock_name = self.key + '.lock'
        self.path = os.path.join(self.directory, self.name)
        self.lock_path = os.path.join(self.directory, self.lock_name)
        self.lock_timeout = lock_timeout
        self.warnings = []
        self._dir_fd = None
        self._lock_fd = None

    def open_directory(self, create=True):
        """Check the directory and its parents once and keep it open; False if it is missing and not create."""
        if self._dir_fd is None:
            self._dir_fd = open_private_directory(self.directory, create)
        return self._dir_fd is not None

    def close(self):
        self.release()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _directory(self):
        # Without the checked descriptor a relative name would resolve against the current directory.
        if self._dir_fd is None:
            raise CacheError('the token cache directory %s is not open; call open_directory() first' % self.directory)
        return self._dir_fd

    def _open(self, name, flags, mode=0o600):
        return os.open(name, flags | os.O_NOFOLLOW | _CLOEXEC, mode, dir_fd=self._directory())

    @property
    def dir_fd(self):
        return self._dir_fd

    def read(self, warn=True):
        """The cached Token, or None. A corrupt, foreign or planted file gives a warning, not an error."""
        try:
            raw = read_bounded(self._directory(), self.name)
        except ValueError as exc:
            token, reason = None, str(exc)
        except OSError as exc:
            token, reason = None, 'it cannot be read (%s)' % (exc.strerror or exc)
        else:
            if raw is None:
                return None
            try:
                data = json.loads(raw.decode('utf-8'))
            except (ValueError, UnicodeDecodeError, RecursionError):
                token, reason = None, 'it is not valid JSON'
            else:
                token, reason = Token.from_cache(data, self.token_url, self.client_id, self.principal)
        if token is None and warn:
            self.warnings.append('ignoring the token cache file %s: %s; it will be replaced' % (self.path, reason))
        return token

    def write(self, token):
        """Atomically replace the cache file: a new file in the same directory, fsync, rename."""
        token.principal = self.principal
        payload = json.dumps(token.to_dict(), sort_keys=True).encode('utf-8')
        tmp_name = '.%s.%s.tmp' % (self.key, binascii.hexlify(os.urandom(8)).decode('ascii'))
        try:
            fd = self._open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, self.name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            tmp_name = None
            os.fsync(self._dir_fd)
        except OSError as exc:
            raise CacheError('cannot write the token cache file %s: %s' % (self.path, exc.strerror or exc))
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name, dir_fd=self._dir_fd)
                except OSError:
                    pass

    def forget(self, access_token):
        """Mark the entry expired if it holds access_token, which the API rejected; its refresh token stays."""
        with self:
            cached = self.read(warn=False)
            if cached is None or cached.access_token != access_token:
                return False
            cached.expires_at = 0.0
            self.write(cached)
            return True

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    def acquire(self):
        """Exclusive flock on the per-key lock file; polls so that a stuck holder cannot hang us forever."""
        try:
            fd = self._open(self.lock_name, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK)
        except OSError as exc:
            reason = 'it is a symbolic link' if exc.errno == errno.ELOOP else exc.strerror or exc
            raise CacheError('cannot open the token cache lock %s: %s' % (self.lock_path, reason))
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            raise CacheError('the token cache lock %s is not a regular file of yours; remove it' % self.lock_path)
        lock_exclusive(fd, self.lock_path, self.lock_timeout, 'the token cache lock')
        self._lock_fd = fd

    def release(self):
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None


def lock_exclusive(fd, path, timeout, what):
    """An exclusive flock on fd, polled so that a stuck holder cannot hang us forever; fd is closed on failure."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise CacheError('cannot take %s %s: %s' % (what, path, exc.strerror or exc))
        if time.monotonic() >= deadline:
            os.close(fd)
            raise CacheError('timed out after %d seconds waiting for %s %s' % (timeout, what, path))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def forget_rejected_token(directory, access_token):
    """Expire every entry of the cache directory that holds access_token; True if there was one.

    Used when the API rejects a token the user passed as access_token: it may have come from the
    cache (the oauth_token module or lookup), and the next run must not get it back.
    """
    probe = TokenCache(directory, '', '')
    holders = []
    try:
        if not probe.open_directory(create=False):
            return False
        for name in os.listdir(probe.dir_fd):
            if not _CACHE_FILE_RE.match(name):
                continue
            try:
                data = json.loads(read_bounded(probe.dir_fd, name) or b'null')
            except (ValueError, UnicodeDecodeError, RecursionError, OSError):
                continue
            if (isinstance(data, dict) and data.get('access_token') == access_token
                    and all(isinstance(data.get(field), str) for field in ('token_url', 'client_id', 'principal'))):
                holders.append(data)
    finally:
        probe.close()
    found = False
    for data in holders:
        # Opened by its own identity: forget() only touches the entry if it really holds the token.
        entry = TokenCache(directory, data['token_url'], data['client_id'], data['principal'])
        try:
            found = (entry.open_directory(create=False) and entry.forget(access_token)) or found
        finally:
            entry.close()
    return found


class TokenEndpoint(object):
    """POSTs grants to the token URL, authenticating the client as the endpoint's flavour expects.

    Bitbucket Cloud: HTTP Basic client_id:client_secret. Data Center: client_id and client_secret
    as form parameters (its provider does not read Basic), and no client_credentials grant.
    """

    def __init__(self, http, token_url, client_id, client_secret, retry=None, flavor=None):
        self.http = http
        self.token_url = validate_url('token_url', token_url)
        self.flavor = flavor or token_endpoint(self.token_url)[1]
        if not client_id:
            raise ValidationError('client_id is required to request a token')
        if not client_secret:
            if self.flavor == DATACENTER:
                raise ValidationError('client_secret is required to request a token (Bitbucket Data Center '
                                      'authenticates the application link with client_id and client_secret)')
            raise ValidationError('client_secret is required to request a token (Bitbucket authenticates the '
                                  'consumer with HTTP Basic client_id:client_secret)')
        self.client_id = client_id
        self._client_secret = client_secret
        self.retry = retry or RetryPolicy()
        self._checks = {}

    def _basic(self):
        # Bitbucket expects the raw id:secret (as curl -u sends it), not the RFC's form-encoded pair.
        raw = ('%s:%s' % (self.client_id, self._client_secret)).encode('utf-8')
        return 'Basic ' + base64.b64encode(raw).decode('ascii')

    def secrets(self):
        """The client secret, raw and in its Basic form, for redaction (redact() adds its form encodings)."""
        return [self._client_secret, self._basic().partition(' ')[2]]

    def _secrets(self, fields):
        return self.secrets() + [value for value in fields.values() if value]

    def minted_with_this_secret(self, token):
        """Whether token was minted with the client secret this endpoint holds (see secret_check())."""
        check = token.secret_check
        if not check:
            return False
        expected = self._checks.get(check['salt'])
        if expected is None:
            expected = self._checks[check['salt']] = secret_check(self._client_secret, check['salt'])['hash']
        return hmac.compare_digest(expected, check['hash'])

    def grant(self, grant_type, now=None, **fields):
        """Request a token; returns a Token or raises TokenRequestError / TransportError."""
        if grant_type == 'client_credentials':
            refuse_client_credentials(self.flavor, self.token_url)
        form = [('grant_type', grant_type)]
        form.extend((key, value) for key, value in sorted(fields.items()) if value is not None)
        if self.flavor == DATACENTER:
            form.extend((('client_id', self.client_id), ('client_secret', self._client_secret)))
            headers = {}
        else:
            headers = {'Authorization': self._basic()}
        headers.update({
            'Content-Type': 'application/x-www-form-urlencoded',
            'Accept': 'application/json',
        })
        data = urlencode(form)
        issued_at = time.time() if now is None else now

        def send():
            return self.http.request('POST', self.token_url, headers=headers, data=data)

        # A refresh may have been consumed by a request whose answer we lost; retrying it over a
        # dropped connection would only trade the clear error for a confusing one.
        status, resp_headers, body, retries = send_with_retries(
            send, self.retry, 'POST', self.token_url, retry_transport=(grant_type == 'client_credentials'))
        if status >= 400:
            raise self._error(status, resp_headers, body, grant_type, retries, self._secrets(fields))
        try:
            payload = json.loads(body.decode('utf-8'))
        except (ValueError, UnicodeDecodeError, RecursionError):
            # Never quote the body: a server that answers in another encoding puts the new token in it.
            content_type = quote_server_text(resp_headers.get('content-type') or 'not given', self._secrets(fields), limit=100)
            raise ProtocolError('POST %s: HTTP %s: the token response is not JSON (content type %s)'
                                % (safe_url(self.token_url), status, content_type),
                                status=status, url=safe_url(self.token_url), method='POST')
        token = Token.from_response(payload, self.token_url, self.client_id, grant_type, issued_at)
        token.secret_check = secret_check(self._client_secret)
        return token

    def _error(self, status, headers, body, grant_type, retries, secrets):
        error = description = None
        text = decode_body(body)
        try:
            payload = json.loads(text) if text else None
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get('error'), str):
            # Both come from the server: redacted, then bounded, like any quoted server text.
            error = quote_server_text(payload['error'], secrets, limit=100)
            description = payload.get('error_description')
            description = quote_server_text(str(description), secrets) if description else None
            detail = '%s: %s' % (error, description) if description else error
        else:
            detail = error_message(status, headers, body, secrets)
        message = 'POST %s (grant_type=%s): HTTP %s: %s%s' % (
            safe_url(self.token_url), grant_type, status, detail, gave_up_note(retries, headers, self.retry))
        if error in ('unauthorized_client', 'invalid_client'):
            message += '; check client_id and client_secret'
        elif error == 'invalid_grant' and grant_type == 'authorization_code':
            message += '; authorization codes are single-use and short-lived, get a new one'
            if self.flavor == DATACENTER:
                message += ', and send the code_verifier of the authorization that gave the code if it used PKCE'
        elif error == 'unsupported_grant_type' and grant_type == 'client_credentials':
            # A Data Center whose token URL token_endpoint() did not recognise.
            message += '; if this is Bitbucket Data Center, it has no client_credentials grant: ' + DATACENTER_CREDENTIAL_ADVICE
        return TokenRequestError(message, error=error, description=description, status=status,
                                 url=safe_url(self.token_url))


class TokenResult(object):
    """What get_token() decided."""

    def __init__(self, token, changed=False, from_cache=False, warnings=None):
        self.token = token
        self.changed = changed
        self.from_cache = from_cache
        self.warnings = warnings or []


def get_token(endpoint, cache=None, min_ttl=300, grant_type='client_credentials', refresh_token=None, code=None,
              redirect_uri=None, force=False, reject=None, now=None, code_verifier=None):
    """Return a TokenResult: a cached token with at least min_ttl seconds left, or a new one.

    endpoint: TokenEndpoint. cache: TokenCache for the grant's principal, or None (no caching).
    force: mint even if the cache has a good token. reject: an access token the API refused, so
    a cached token equal to it is not reused, but a different one (minted by another process
    meanwhile) is. An authorization code is always exchanged: it asks for a new grant.
    Minting changes nothing on Bitbucket, so it happens in check mode too. code_verifier: the
    PKCE verifier of the authorization that gave code, sent with it only when given.
    """
    if grant_type not in GRANT_TYPES:
        raise ValidationError('grant_type must be one of %s, got %r' % (', '.join(GRANT_TYPES), grant_type))
    if grant_type == 'client_credentials':
        # Before the cache too: Data Center never issued such a token, and the request would only be refused.
        refuse_client_credentials(endpoint.flavor, endpoint.token_url)
    if code_verifier:
        if grant_type != 'authorization_code':
            raise ValidationError('code_verifier goes with grant_type=authorization_code and the code of the same '
                                  'authorization, not with grant_type=%s' % grant_type)
        validate_code_verifier(code_verifier)
    if grant_type == 'refresh_token' and not refresh_token and cache is None:
        raise ValidationError('grant_type=refresh_token needs refresh_token when cache is false')
    if grant_type == 'authorization_code' and not code:
        raise ValidationError('grant_type=authorization_code needs code')
    validate_min_ttl(min_ttl)
    clock = (lambda: now) if now is not None else time.time
    force = force or grant_type == 'authorization_code'

    def usable(token):
        return (token is not None and not force and token.access_token != reject
                and endpoint.minted_with_this_secret(token) and token.ttl(clock()) >= min_ttl)

    if cache is None:
        return _minted(_mint(endpoint, None, grant_type, refresh_token, code, redirect_uri, clock,
                             code_verifier=code_verifier), [], min_ttl, clock)
    # A result reports the warnings of its own call: one cache may serve several (a renewal after a 401).
    cache.warnings = []
    try:
        cache.open_directory()
        # Lock-free fast path: writers rename atomically, so a reader never sees half a file.
        cached = cache.read(warn=False)
        if usable(cached):
            return TokenResult(cached, from_cache=True)
        with cache:
            # Another process may have minted while we waited for the lock.
            cached = cache.read(warn=True)
            if usable(cached):
                return TokenResult(cached, from_cache=True, warnings=cache.warnings)
            token = _mint(endpoint, cached, grant_type, refresh_token, code, redirect_uri, clock, cache.principal,
                          code_verifier)
            if grant_type == 'authorization_code' and cached is not None and cached.refresh_token:
                cache.warnings.append("the new authorization replaced the refresh token of cache entry '%s'; give each "
                                      "user a cache_entry of their own to keep several" % cache.principal.partition(':')[2])
            # Saved before returning: with rotating refresh tokens the old one is already spent.
            cache.write(token)
            return _minted(token, cache.warnings, min_ttl, clock)
    finally:
        cache.close()


def _minted(token, warnings, min_ttl, clock):
    if token.ttl(clock()) < min_ttl:
        warnings.append('the new access token is valid for only %d seconds, less than min_ttl (%d)'
                        % (token.expires_in(clock()), min_ttl))
    return TokenResult(token, changed=True, warnings=warnings)


def _mint(endpoint, cached, grant_type, refresh_token, code, redirect_uri, clock, principal=None, code_verifier=None):
    """Exchange the code; else try refresh tokens (the cached one is the newest if they rotate), then the grant.

    A rejected refresh token falls back to a new client_credentials token for client_credentials;
    for refresh_token it is the error, since the consumer's token would act as someone else.
    """
    if grant_type == 'authorization_code':
        return endpoint.grant('authorization_code', now=clock(), code=code, redirect_uri=redirect_uri,
                              code_verifier=code_verifier or None)
    candidates = []
    if cached is not None and cached.refresh_token:
        candidates.append(cached.refresh_token)
    if refresh_token and refresh_token not in candidates:
        candidates.append(refresh_token)
    rejected = None
    for candidate in candidates:
        try:
            token = endpoint.grant('refresh_token', now=clock(), refresh_token=candidate)
        except TokenRequestError as exc:
            if exc.error not in REFRESH_REJECTED:
                raise
            rejected = exc
            continue
        if token.refresh_token is None:
            # No new refresh token means the old one stays valid (Bitbucket before 2026-05).
            token.refresh_token = candidate
        return token
    if grant_type == 'refresh_token':
        if rejected is not None:
            if cached is not None and cached.refresh_token:
                # Rotating refresh tokens: two controllers with copies of one cache spend the same token.
                rejected.message += ("; the refresh token of cache entry '%s' was refused: each one works once, so another "
                                     "controller with a copy of this cache may have used it; authorize again with the "
                                     "codeferry.bitbucket.authorize playbook" % (principal or '').partition(':')[2])
            raise rejected
        raise ValidationError("grant_type=refresh_token needs refresh_token: cache entry '%s' holds none; authorize "
                              "once with the codeferry.bitbucket.authorize playbook" % (principal or '').partition(':')[2])
    return endpoint.grant('client_credentials', now=clock())
