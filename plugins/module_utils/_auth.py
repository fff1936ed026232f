# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Authentication methods shared by the modules and the lookup, and the shared option specs.

One small class per method, chosen by name. Each gives the Authorization header; the OAuth
method can also refresh() once when the API says its token expired.
"""

from __future__ import annotations

import base64
import os
import threading

from ansible.module_utils.errors import AnsibleFallbackNotFound

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import CacheError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import DATACENTER, api_flavor, has_control_chars, validate_url
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import (
    CONSUMER,
    GRANT_TYPES,
    TokenCache,
    TokenEndpoint,
    default_cache_dir,
    forget_rejected_token,
    get_token,
    principal_for,
    refuse_client_credentials,
    token_endpoint,
)

DEFAULT_API_URL = 'https://api.bitbucket.org/2.0'

# Minimum lifetime left on a token the API modules take from the cache: enough for one task.
API_MIN_TTL = 300

ENV_VARS = {
    'access_token': 'BITBUCKET_ACCESS_TOKEN',
    'client_id': 'BITBUCKET_CLIENT_ID',
    'client_secret': 'BITBUCKET_CLIENT_SECRET',
    'username': 'BITBUCKET_USERNAME',
    'password': 'BITBUCKET_PASSWORD',
}
# URL options that fall back to the environment (an AWX/AAP credential type injects them beside ENV_VARS).
URL_ENV_VARS = {
    'api_url': 'BITBUCKET_API_URL',
    'token_url': 'BITBUCKET_TOKEN_URL',
}
SECRET_OPTIONS = ('access_token', 'client_secret', 'password', 'refresh_token', 'code', 'code_verifier')

# Credential groups in order of precedence when only environment variables are set.
_GROUPS = (
    ('access_token', ('access_token',)),
    ('client_credentials', ('client_id', 'client_secret')),
    ('basic', ('username', 'password')),
)


# ---------------------------------------------------------------------------------------------
# Argument specs (mirrored by plugins/doc_fragments/)


def env_url_fallback(name, environ=None):
    """Argument spec fallback: the environment variable `name`, where empty counts as unset.

    Not env_fallback: AWX renders an optional credential input left blank as "", which must leave
    the option at its default (or, for token_url, derived from api_url) rather than set it to "".
    """
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        raise AnsibleFallbackNotFound
    return value


def connection_argument_spec():
    return dict(
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        timeout=dict(type='int', default=30),
    )


def group_argument_spec():
    """The options every module of the action group accepts, so that module_defaults can set them once."""
    spec = dict(
        # Ansible applies a fallback before the default: an option given in the task or module_defaults wins.
        api_url=dict(type='str', default=DEFAULT_API_URL, fallback=(env_url_fallback, [URL_ENV_VARS['api_url']])),
        # None: Bitbucket Cloud's, or on Data Center derived from api_url (see _oauth.token_endpoint()).
        token_url=dict(type='str', no_log=False, fallback=(env_url_fallback, [URL_ENV_VARS['token_url']])),
        client_id=dict(type='str', no_log=False),
        client_secret=dict(type='str', no_log=True),
        access_token=dict(type='str', no_log=True),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        workspace=dict(type='str'),
        cache=dict(type='bool', default=True),
        cache_dir=dict(type='path'),
    )
    spec.update(connection_argument_spec())
    return spec


def api_argument_spec():
    """Options of every module that calls the REST API."""
    return group_argument_spec()


def token_argument_spec():
    """Options of the oauth_token module; the lookup's are its documented options, the same minus the group's."""
    spec = group_argument_spec()
    spec.update(
        grant_type=dict(type='str', default='client_credentials', choices=list(GRANT_TYPES)),
        refresh_token=dict(type='str', no_log=True),
        code=dict(type='str', no_log=True),
        code_verifier=dict(type='str', no_log=True),
        redirect_uri=dict(type='str'),
        cache_entry=dict(type='str'),
        min_ttl=dict(type='int', default=300),
        force=dict(type='bool', default=False),
    )
    return spec


# ---------------------------------------------------------------------------------------------
# Choosing credentials


def resolve_credentials(params, environ=None, allowed=('access_token', 'client_credentials', 'basic')):
    """Return (method name, {option: value}, [environment variables used]).

    Options given explicitly decide the method, and only that method's missing options are
    taken from the environment; so an unrelated BITBUCKET_* variable in the environment
    never conflicts with what a task says. With no explicit option, the environment decides
    in the order access token, client credentials, username/password.
    """
    environ = os.environ if environ is None else environ
    groups = [(name, options) for name, options in _GROUPS if name in allowed]
    explicit = [name for name, options in groups if any(params.get(option) for option in options)]
    if len(explicit) > 1:
        described = [' + '.join(options) for name, options in groups if name in explicit]
        given = [option for name, options in groups if name in explicit for option in options if params.get(option)]
        raise ValidationError('choose one way to authenticate: %s are mutually exclusive, and this task has %s (options '
                              'set in module_defaults, for example for group/codeferry.bitbucket.bitbucket, count too)'
                              % (' and '.join(described), ', '.join(given)))
    if explicit:
        chosen = explicit[0]
    else:
        chosen = None
        # On Data Center a consumer's id and secret in the environment (kept for the authorize playbook)
        # cannot authenticate an API call: they must not hide a token or a username/password set beside them.
        from_environment = [(name, options) for name, options in groups
                            if not (name == 'client_credentials' and api_flavor(params.get('api_url')) == DATACENTER
                                    and len(groups) > 1)]
        for name, options in from_environment + [group for group in groups if group not in from_environment]:
            if any(environ.get(ENV_VARS[option]) for option in options):
                chosen = name
                break
        if chosen is None:
            raise ValidationError('no credentials: set %s (or the environment variables %s)'
                                  % (', or '.join(' + '.join(options) for name, options in groups),
                                     ', '.join(ENV_VARS[o] for name, options in groups for o in options)))
    options = dict(groups)[chosen]
    values = {}
    from_env = []
    for option in options:
        value = params.get(option)
        if not value and environ.get(ENV_VARS[option]):
            value = environ[ENV_VARS[option]]
            from_env.append(ENV_VARS[option])
        if not value:
            others = [o for o in options if o != option]
            raise ValidationError('%s is required with %s (or set %s)' % (option, ' and '.join(others), ENV_VARS[option]))
        values[option] = value
    return chosen, values, from_env


# ---------------------------------------------------------------------------------------------
# Auth methods


class AuthMethod(object):
    name = None
    can_refresh = False

    def __init__(self):
        self.warnings = []

    def headers(self):
        raise NotImplementedError

    def refresh(self, failed_headers):
        raise NotImplementedError

    def rejected(self):
        """Called when the API refused these credentials for good (HTTP 401); returns advice for the message."""
        return ''

    def secrets(self):
        """Secret strings this method knows, for front ends that redact messages themselves."""
        return []


class AccessTokenAuth(AuthMethod):
    """A bearer token given by the user (OAuth, repository/project/workspace access token)."""

    name = 'access_token'

    def __init__(self, access_token, cache_dir=None):
        super(AccessTokenAuth, self).__init__()
        if has_control_chars(access_token):
            # Sent as is in a header: http.client would refuse it with an error that quotes the token.
            raise ValidationError('access_token contains whitespace or control characters (a stray newline from a '
                                  'file or a vault?); pass the token alone')
        self._token = access_token
        self.cache_dir = cache_dir

    def headers(self):
        return {'Authorization': 'Bearer %s' % self._token}

    def rejected(self):
        # The token may have come from the token cache (oauth_token module or lookup): drop it there,
        # so that the next run mints a new one instead of failing the same way until it expires.
        try:
            dropped = bool(self.cache_dir) and forget_rejected_token(self.cache_dir, self._token)
        except (CacheError, OSError):
            dropped = False  # an unusable cache cannot hold it; the 401 is what the user needs to see
        if dropped:
            return ('; the token was dropped from the token cache, so the next run of codeferry.bitbucket.oauth_token '
                    'gets a new one (or renew it now with force: true)')
        return ('; the access token is expired or revoked: get a new one, for example with codeferry.bitbucket.oauth_token '
                'and force: true')

    def secrets(self):
        return [self._token]


class BasicAuth(AuthMethod):
    """Username (or Atlassian account e-mail) with an API token or app password."""

    name = 'basic'

    def __init__(self, username, password):
        super(BasicAuth, self).__init__()
        raw = ('%s:%s' % (username, password)).encode('utf-8')
        self._header = 'Basic ' + base64.b64encode(raw).decode('ascii')
        self._password = password

    def headers(self):
        return {'Authorization': self._header}

    def secrets(self):
        # The header's base64 credential too: a server may echo the header it was sent.
        return [self._password, self._header.partition(' ')[2]]


class ClientCredentialsAuth(AuthMethod):
    """OAuth consumer: a token from the shared cache, minted when needed, renewed once when the API refuses it."""

    name = 'client_credentials'
    can_refresh = True

    def __init__(self, endpoint, cache=None, min_ttl=API_MIN_TTL):
        super(ClientCredentialsAuth, self).__init__()
        self.endpoint = endpoint
        self.cache = cache
        self.min_ttl = min_ttl
        self.token = None
        self._lock = threading.Lock()

    def _use(self, result):
        self.warnings.extend(result.warnings)
        self.token = result.token

    def headers(self):
        with self._lock:
            if self.token is None:
                self._use(get_token(self.endpoint, self.cache, min_ttl=self.min_ttl))
            return {'Authorization': 'Bearer %s' % self.token.access_token}

    def refresh(self, failed_headers):
        with self._lock:
            if 'Bearer %s' % self.token.access_token != failed_headers.get('Authorization'):
                return  # another thread renewed it already
            # Not force: a token that another process put in the cache meanwhile is just as new.
            self._use(get_token(self.endpoint, self.cache, min_ttl=self.min_ttl, reject=self.token.access_token))

    def rejected(self):
        if self.token is not None and self.cache is not None:
            try:
                self.cache.open_directory()
                self.cache.forget(self.token.access_token)
            except CacheError:
                pass  # an unusable cache cannot hand the token out again; the 401 is what matters
            finally:
                self.cache.close()
        return ''

    def secrets(self):
        values = self.endpoint.secrets()
        if self.token is not None:
            values.append(self.token.access_token)
            if self.token.refresh_token:
                values.append(self.token.refresh_token)
        return values


AUTH_METHODS = {
    AccessTokenAuth.name: AccessTokenAuth,
    BasicAuth.name: BasicAuth,
    ClientCredentialsAuth.name: ClientCredentialsAuth,
}


def cache_directory(params, environ=None):
    """The token cache directory the options ask for, or None when cache is false."""
    if not params.get('cache', True):
        return None
    return params.get('cache_dir') or default_cache_dir(environ)


def token_cache(params, token_url, client_id, principal=CONSUMER, environ=None):
    """The TokenCache the options ask for, or None when cache is false."""
    directory = cache_directory(params, environ)
    return TokenCache(directory, token_url, client_id, principal) if directory else None


def request_token(params, http, credentials):
    """The oauth_token module's and lookup's token: the grant options applied through the cache.

    credentials: the client_id/client_secret values from resolve_credentials(), which the front
    ends call first so that they know the secrets to hide before anything can fail.
    """
    token_url, flavor = token_endpoint(params.get('token_url'), params.get('api_url'))
    principal = principal_for(params['grant_type'], params.get('cache_entry'))
    endpoint = TokenEndpoint(http, token_url, credentials['client_id'], credentials['client_secret'], flavor=flavor)
    return get_token(endpoint, token_cache(params, endpoint.token_url, credentials['client_id'], principal),
                     min_ttl=params['min_ttl'], grant_type=params['grant_type'], refresh_token=params['refresh_token'],
                     code=params['code'], redirect_uri=params['redirect_uri'], force=params.get('force', False),
                     code_verifier=params.get('code_verifier'))


def build_auth(params, http, environ=None, retry=None):
    """The auth method for the options of an API module (see api_argument_spec()).

    Returns (AuthMethod, [environment variables used]).
    """
    name, values, from_env = resolve_credentials(params, environ)
    if name == ClientCredentialsAuth.name:
        token_url, flavor = token_endpoint(params.get('token_url'), params.get('api_url'))
        token_url = validate_url('token_url', token_url)
        # Data Center has no client_credentials grant: say so now rather than after a refused request.
        refuse_client_credentials(flavor, token_url)
        endpoint = TokenEndpoint(http, token_url, values['client_id'], values['client_secret'], retry=retry, flavor=flavor)
        return ClientCredentialsAuth(endpoint, token_cache(params, token_url, values['client_id'], environ=environ)), from_env
    if name == AccessTokenAuth.name:
        return AccessTokenAuth(values['access_token'], cache_directory(params, environ)), from_env
    return AUTH_METHODS[name](**values), from_env
