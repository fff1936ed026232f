# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""OAuth 2.0 token endpoint grants and the on-disk token cache.

The cache exists so that a playbook run (or fifty forks of it) asks Bitbucket for one token,
not one per task or host: Bitbucket rate-limits per OAuth consumer.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time

from urllib.parse import urlencode

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import (
    RetryPolicy,
    error_message,
    send_with_retries,
    validate_url,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    CacheError,
    ProtocolError,
    TokenRequestError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import has_control_chars, redact, safe_url

DEFAULT_TOKEN_URL = 'https://bitbucket.org/site/oauth2/access_token'
DEFAULT_CACHE_DIR = '~/.cache/codeferry.bitbucket/tokens'
CACHE_DIR_ENV = 'BITBUCKET_TOKEN_CACHE_DIR'
GRANT_TYPES = ('client_credentials', 'refresh_token', 'authorization_code')
MAX_MIN_TTL = 86400  # a bound against typos; Bitbucket tokens live 7200 s, so 7200 or more renews on every run
CACHE_FORMAT = 1
LOCK_TIMEOUT = 120.0

# Token endpoint answers meaning "this refresh token is no good", which Bitbucket sends as
# invalid_request (not the RFC's invalid_grant).
REFRESH_REJECTED = frozenset(('invalid_request', 'invalid_grant'))


def validate_min_ttl(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= MAX_MIN_TTL:
        raise ValidationError('min_ttl must be a whole number of seconds from 0 to %d, got %r' % (MAX_MIN_TTL - 1, value))
    return value


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


class Token(object):
    """An access token plus what we know about it; the shape of one cache file."""

    FIELDS = ('access_token', 'token_type', 'expires_at', 'scopes', 'refresh_token', 'token_url', 'client_id', 'grant_type')

    def __init__(self, access_token, token_type='bearer', expires_at=0.0, scopes=None, refresh_token=None,
                 token_url=None, client_id=None, grant_type=None):
        self.access_token = access_token
        self.token_type = token_type
        self.expires_at = float(expires_at)
        self.scopes = list(scopes or [])
        self.refresh_token = refresh_token
        self.token_url = token_url
        self.client_id = client_id
        self.grant_type = grant_type

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
        if has_control_chars(access_token):
            # It goes into an Authorization header, where http.client would quote it in its error.
            raise ProtocolError('POST %s: the token response has an access_token with whitespace or control characters'
                                % safe_url(token_url))
        expires_in = payload.get('expires_in', 3600)
        try:
            expires_in = float(expires_in)
        except (TypeError, ValueError):
            raise ProtocolError('POST %s: the token response has an invalid expires_in' % safe_url(token_url))
        refresh_token = payload.get('refresh_token')
        if refresh_token is not None and (not isinstance(refresh_token, str) or has_control_chars(refresh_token)):
            raise ProtocolError('POST %s: the token response has an invalid refresh_token' % safe_url(token_url))
        try:
            scopes = parse_scopes(payload)
        except ProtocolError as exc:
            raise ProtocolError('POST %s: %s' % (safe_url(token_url), exc))
        return cls(access_token=access_token, token_type=str(payload.get('token_type') or 'bearer'),
                   expires_at=issued_at + expires_in, scopes=scopes, refresh_token=refresh_token or None,
                   token_url=token_url, client_id=client_id, grant_type=grant_type)

    @classmethod
    def from_cache(cls, data, token_url, client_id):
        """A Token from parsed cache JSON, or a short reason why the data is unusable."""
        if not isinstance(data, dict):
            return None, 'not a JSON object'
        if data.get('token_url') != token_url or data.get('client_id') != client_id:
            return None, 'it belongs to another token_url or client_id'
        checks = (
            ('access_token', lambda v: isinstance(v, str) and v),
            ('token_type', lambda v: isinstance(v, str)),
            ('expires_at', lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
            ('scopes', lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)),
            ('refresh_token', lambda v: v is None or (isinstance(v, str) and v)),
            ('grant_type', lambda v: v is None or isinstance(v, str)),
        )
        for field, check in checks:
            if not check(data.get(field)):
                return None, 'field %s is missing or has the wrong type' % field
        return cls(**dict((field, data.get(field)) for field in cls.FIELDS)), None


def cache_key(token_url, client_id):
    """File name stem for a consumer: never derived from the secret."""
    return hashlib.sha256(('%s\0%s' % (token_url, client_id)).encode('utf-8')).hexdigest()


def default_cache_dir(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR


class TokenCache(object):
    """One JSON file per (token_url, client_id), mode 0600 in a 0700 directory, with a lock file."""

    def __init__(self, directory, token_url, client_id, lock_timeout=LOCK_TIMEOUT):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.token_url = token_url
        self.client_id = client_id
        self.key = cache_key(token_url, client_id)
        self.path = os.path.join(self.directory, self.key + '.json')
        self.lock_path = os.path.join(self.directory, self.key + '.lock')
        self.lock_timeout = lock_timeout
        self.warnings = []
        self._lock_fd = None

    def ensure_directory(self):
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CacheError('the token cache path %s is not a directory' % self.directory)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            info = os.stat(self.directory)
        except OSError as exc:
            raise CacheError('cannot create the token cache directory %s: %s' % (self.directory, exc.strerror or exc))
        if hasattr(os, 'geteuid') and info.st_uid != os.geteuid():
            raise CacheError('the token cache directory %s belongs to another user; set cache_dir to a directory of your own'
                             % self.directory)
        mode = stat.S_IMODE(info.st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_ISVTX):
            # A shared directory such as /tmp: others could plant a cache file, and tightening its
            # mode would break everyone else who uses it. Refuse rather than chmod it.
            raise CacheError('the token cache directory %s is writable by other users (mode %04o); set cache_dir to a '
                             'directory of your own' % (self.directory, mode))
        if mode != 0o700:
            # makedirs() is subject to the umask, and an existing private directory may be readable by others.
            try:
                os.chmod(self.directory, 0o700)
            except OSError as exc:
                raise CacheError('cannot set mode 0700 on the token cache directory %s: %s'
                                 % (self.directory, exc.strerror or exc))

    def read(self, warn=True):
        """The cached Token, or None. A corrupt or foreign file gives a warning, not an error."""
        try:
            with open(self.path, 'rb') as handle:
                raw = handle.read()
        except (IOError, OSError) as exc:
            if exc.errno != errno.ENOENT and warn:
                self.warnings.append('cannot read the token cache file %s (%s); a new token will be requested'
                                     % (self.path, exc.strerror or exc))
            return None
        try:
            data = json.loads(raw.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            data, reason = None, 'it is not valid JSON'
        else:
            token, reason = Token.from_cache(data, self.token_url, self.client_id)
            if token is not None:
                return token
        if warn:
            self.warnings.append('ignoring the token cache file %s: %s; it will be replaced' % (self.path, reason))
        return None

    def write(self, token):
        """Atomically replace the cache file: temp file in the same directory, fsync, rename."""
        payload = json.dumps(token.to_dict(), sort_keys=True).encode('utf-8')
        tmp_path = None
        try:
            fd, tmp_path = tempfile.mkstemp(prefix='.%s.' % self.key, suffix='.tmp', dir=self.directory)
            with os.fdopen(fd, 'wb') as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_path, self.path)
            tmp_path = None
            self._fsync_directory()
        except OSError as exc:
            raise CacheError('cannot write the token cache file %s: %s' % (self.path, exc.strerror or exc))
        finally:
            if tmp_path is not None:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass

    def _fsync_directory(self):
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    def acquire(self):
        """Exclusive flock on the per-key lock file; polls so that a stuck holder cannot hang us forever."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CacheError('cannot open the token cache lock %s: %s' % (self.lock_path, exc.strerror or exc))
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd = fd
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise CacheError('cannot lock the token cache %s: %s' % (self.lock_path, exc.strerror or exc))
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CacheError('timed out after %d seconds waiting for the token cache lock %s'
                                 % (self.lock_timeout, self.lock_path))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def release(self):
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None


class TokenEndpoint(object):
    """POSTs grants to the token URL with HTTP Basic client authentication."""

    def __init__(self, http, token_url, client_id, client_secret, retry=None):
        self.http = http
        self.token_url = validate_url('token_url', token_url)
        if not client_id:
            raise ValidationError('client_id is required to request a token')
        if not client_secret:
            raise ValidationError('client_secret is required to request a token (Bitbucket authenticates the '
                                  'consumer with HTTP Basic client_id:client_secret)')
        self.client_id = client_id
        self._client_secret = client_secret
        self.retry = retry or RetryPolicy()

    def _basic(self):
        # Bitbucket expects the raw id:secret (as curl -u sends it), not the RFC's form-encoded pair.
        raw = ('%s:%s' % (self.client_id, self._client_secret)).encode('utf-8')
        return 'Basic ' + base64.b64encode(raw).decode('ascii')

    def _secrets(self, fields):
        return [self._client_secret, self._basic().partition(' ')[2]] + [value for value in fields.values() if value]

    def grant(self, grant_type, now=None, **fields):
        """Request a token; returns a Token or raises TokenRequestError / TransportError."""
        form = [('grant_type', grant_type)]
        form.extend((key, value) for key, value in sorted(fields.items()) if value is not None)
        data = urlencode(form)
        headers = {
            'Authorization': self._basic(),
            'Content-Type': 'application/x-www-form-urlencoded',
            'Accept': 'application/json',
        }
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
        except (ValueError, UnicodeDecodeError):
            # Never quote the body: a server that answers in another encoding puts the new token in it.
            raise ProtocolError('POST %s: HTTP %s: the token response is not JSON (content type %s)'
                                % (safe_url(self.token_url), status, resp_headers.get('content-type') or 'not given'),
                                status=status, url=safe_url(self.token_url), method='POST')
        return Token.from_response(payload, self.token_url, self.client_id, grant_type, issued_at)

    def _error(self, status, headers, body, grant_type, retries, secrets):
        error = description = None
        try:
            payload = json.loads(body.decode('utf-8'))
        except (ValueError, UnicodeDecodeError, AttributeError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get('error'), str):
            error = redact(payload['error'], secrets)
            description = payload.get('error_description')
            description = redact(str(description), secrets) if description else None
            detail = '%s: %s' % (error, description) if description else error
        else:
            detail = error_message(status, headers, body, secrets)
        message = 'POST %s (grant_type=%s): HTTP %s: %s' % (safe_url(self.token_url), grant_type, status, detail)
        if retries:
            message += ' (gave up after %d retries)' % retries
        if error in ('unauthorized_client', 'invalid_client'):
            message += '; check client_id and client_secret'
        elif error == 'invalid_grant' and grant_type == 'authorization_code':
            message += '; authorization codes are single-use and short-lived, get a new one'
        return TokenRequestError(message, error=error, description=description, status=status,
                                 url=safe_url(self.token_url))


class TokenResult(object):
    """What get_token() decided: the token (None in check mode when one would be minted)."""

    def __init__(self, token=None, changed=False, from_cache=False, msg=None, warnings=None, grant_type=None):
        self.token = token
        self.changed = changed
        self.from_cache = from_cache
        self.msg = msg
        self.warnings = warnings or []
        self.grant_type = grant_type


def get_token(endpoint, cache=None, min_ttl=300, check_mode=False, grant_type='client_credentials',
              refresh_token=None, code=None, redirect_uri=None, force=False, reject=None, now=None):
    """Return a TokenResult: a cached token with at least min_ttl seconds left, or a new one.

    endpoint: TokenEndpoint. cache: TokenCache or None (no caching). force: ignore a cached
    token (used after the API said it expired); reject: an access token known to be bad, so
    a cached token equal to it is not reused but a different one (minted by another process
    meanwhile) is.
    """
    if grant_type not in GRANT_TYPES:
        raise ValidationError('grant_type must be one of %s, got %r' % (', '.join(GRANT_TYPES), grant_type))
    if grant_type == 'refresh_token' and not refresh_token:
        raise ValidationError('grant_type=refresh_token needs refresh_token')
    if grant_type == 'authorization_code' and not code:
        raise ValidationError('grant_type=authorization_code needs code')
    validate_min_ttl(min_ttl)
    clock = (lambda: now) if now is not None else time.time

    def usable(token):
        if token is None:
            return False
        if reject is not None and token.access_token == reject:
            return False
        if force and reject is None:
            return False
        return token.ttl(clock()) >= min_ttl

    if cache is None:
        if check_mode:
            return TokenResult(changed=True, msg='check mode: a new access token would be requested (cache is disabled)')
        token, warnings, used = _mint(endpoint, None, grant_type, refresh_token, code, redirect_uri, clock)
        return _minted(token, warnings, used, min_ttl, clock)

    cached = None
    if not check_mode:
        cache.ensure_directory()
        # Lock-free fast path: writers rename atomically, so a reader never sees half a file.
        cached = cache.read(warn=False)
        if usable(cached):
            return TokenResult(token=cached, from_cache=True, grant_type=cached.grant_type)
    else:
        cached = cache.read(warn=True)
        if usable(cached):
            return TokenResult(token=cached, from_cache=True, warnings=cache.warnings, grant_type=cached.grant_type)
        return TokenResult(changed=True, warnings=cache.warnings,
                           msg='check mode: no cached token with at least %d seconds left; a new access token would be requested'
                           % min_ttl)

    with cache:
        # Another process may have minted while we waited for the lock.
        cached = cache.read(warn=True)
        if usable(cached):
            return TokenResult(token=cached, from_cache=True, warnings=cache.warnings, grant_type=cached.grant_type)
        token, warnings, used = _mint(endpoint, cached, grant_type, refresh_token, code, redirect_uri, clock)
        # Saved before returning: with rotating refresh tokens the old one is already spent.
        cache.write(token)
        return _minted(token, cache.warnings + warnings, used, min_ttl, clock)


def _minted(token, warnings, used, min_ttl, clock):
    if token.ttl(clock()) < min_ttl:
        warnings.append('the new access token is valid for only %d seconds, less than min_ttl (%d)'
                        % (token.expires_in(clock()), min_ttl))
    return TokenResult(token=token, changed=True, from_cache=False, warnings=warnings, grant_type=used)


def _mint(endpoint, cached, grant_type, refresh_token, code, redirect_uri, clock):
    """Try refresh tokens first (the cached one is the newest if they rotate), then the grant.

    A rejected refresh token falls back to the code for authorization_code and to a new
    client_credentials token for client_credentials; for refresh_token it is the error.
    """
    warnings = []
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
        return token, warnings, 'refresh_token'
    if grant_type == 'authorization_code':
        token = endpoint.grant('authorization_code', now=clock(), code=code, redirect_uri=redirect_uri)
        return token, warnings, 'authorization_code'
    if grant_type == 'refresh_token':
        # Asked for a token acting as a user: a client_credentials token would act as the
        # consumer instead and fail later in confusing ways, so say the refresh token is dead.
        raise rejected
    token = endpoint.grant('client_credentials', now=clock())
    return token, warnings, 'client_credentials'
