# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Choosing credentials, the auth methods, the shared argument spec and repository/ref flattening."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import AnsibleFallbackNotFound

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import (
    AccessTokenAuth,
    BasicAuth,
    ClientCredentialsAuth,
    api_argument_spec,
    DEFAULT_API_URL,
    build_auth,
    env_url_fallback,
    resolve_credentials,
    token_argument_spec,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import AuthenticationError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import RetryPolicy, strip_userinfo
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import CONSUMER, Token, TokenCache, secret_check
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import ref_summary, repository_summary, split_ref_name

from bitbucket_fakes import CLIENT_ID, SECRET, FakeHttp, NoSleep, reply

SECRET_OPTIONS = ('access_token', 'client_secret', 'password', 'refresh_token', 'code', 'code_verifier')
TOKEN_URL = 'https://bitbucket.example/site/oauth2/access_token'
API = 'https://api.example/2.0'


# --- resolve_credentials -------------------------------------------------------------------


def test_explicit_options_win_over_unrelated_environment():
    env = {'BITBUCKET_USERNAME': 'alice', 'BITBUCKET_PASSWORD': 'pw', 'BITBUCKET_ACCESS_TOKEN': 'tok'}
    name, values, from_env = resolve_credentials({'client_id': 'id', 'client_secret': 's'}, env)
    assert name == 'client_credentials' and values == {'client_id': 'id', 'client_secret': 's'} and from_env == []


def test_missing_half_of_a_group_comes_from_the_environment():
    name, values, from_env = resolve_credentials({'client_id': 'id'}, {'BITBUCKET_CLIENT_SECRET': 's'})
    assert values == {'client_id': 'id', 'client_secret': 's'} and from_env == ['BITBUCKET_CLIENT_SECRET']


def test_environment_precedence_without_options():
    env = {'BITBUCKET_CLIENT_ID': 'id', 'BITBUCKET_CLIENT_SECRET': 's', 'BITBUCKET_USERNAME': 'u', 'BITBUCKET_PASSWORD': 'p'}
    assert resolve_credentials({}, env)[0] == 'client_credentials'
    assert resolve_credentials({}, dict(env, BITBUCKET_ACCESS_TOKEN='t'))[0] == 'access_token'


def test_two_explicit_methods_are_mutually_exclusive():
    with pytest.raises(ValidationError, match='access_token and client_id \\+ client_secret are mutually exclusive'):
        resolve_credentials({'access_token': 'secret-token', 'client_id': 'id', 'client_secret': 's'}, {})


def test_conflict_message_names_the_options_given():
    # Half of it may come from module_defaults: the message says which options collided.
    with pytest.raises(ValidationError) as info:
        resolve_credentials({'access_token': 'secret-token', 'client_id': 'id', 'client_secret': 'secret-cs'}, {})
    message = str(info.value)
    assert 'this task has access_token, client_id, client_secret' in message and 'module_defaults' in message
    assert 'secret-token' not in message and 'secret-cs' not in message
    with pytest.raises(ValidationError, match=r'this task has client_id, username \('):
        resolve_credentials({'client_id': 'id', 'username': 'u'}, {})


def test_incomplete_group_is_a_clear_error():
    with pytest.raises(ValidationError, match='^password is required with username \\(or set BITBUCKET_PASSWORD\\)$'):
        resolve_credentials({'username': 'alice'}, {})
    with pytest.raises(ValidationError, match='^client_secret is required with client_id'):
        resolve_credentials({'client_id': 'id'}, {})


def test_no_credentials_at_all():
    with pytest.raises(ValidationError, match='^no credentials'):
        resolve_credentials({}, {})


def test_allowed_restricts_the_methods():
    with pytest.raises(ValidationError, match='client_secret is required'):
        resolve_credentials({'client_id': 'x'}, {'BITBUCKET_ACCESS_TOKEN': 't'}, allowed=('client_credentials',))


def test_secret_values_never_in_messages():
    for params in ({'access_token': 'secret-token', 'username': 'u', 'password': 'secret-pw'},
                   {'password': 'secret-pw'}, {'client_secret': 'secret-cs'}):
        with pytest.raises(ValidationError) as info:
            resolve_credentials(params, {})
        assert 'secret-' not in str(info.value)


# --- auth methods --------------------------------------------------------------------------


def test_bearer_and_basic_headers():
    assert AccessTokenAuth('t0k').headers() == {'Authorization': 'Bearer t0k'}
    header = BasicAuth('alice@example.com', 'ATATT+/=').headers()['Authorization']
    assert base64.b64decode(header[6:]).decode() == 'alice@example.com:ATATT+/='
    assert not AccessTokenAuth('x').can_refresh and not BasicAuth('u', 'p').can_refresh


def test_build_auth_picks_the_class(tmp_path):
    http = FakeHttp(lambda *a: reply(200, {}))
    auth, dummy = build_auth({'access_token': 't', 'timeout': 30}, http, environ={})
    assert isinstance(auth, AccessTokenAuth)
    auth, dummy = build_auth({'username': 'u', 'password': 'p', 'timeout': 30}, http, environ={})
    assert isinstance(auth, BasicAuth)
    auth, dummy = build_auth({'client_id': 'i', 'client_secret': 's', 'cache_dir': str(tmp_path), 'timeout': 30}, http, environ={})
    assert isinstance(auth, ClientCredentialsAuth) and isinstance(auth.cache, TokenCache)
    auth, dummy = build_auth({'client_id': 'i', 'client_secret': 's', 'cache': False, 'timeout': 30}, http, environ={})
    assert auth.cache is None


def test_build_auth_validates_token_url():
    with pytest.raises(ValidationError, match='token_url must be an absolute https:// URL'):
        build_auth({'client_id': 'i', 'client_secret': 's', 'token_url': 'bitbucket.org/x', 'timeout': 30},
                   FakeHttp(None), environ={})


class ExpiringApi(object):
    """Token endpoint + API in one: every token but the newest is reported as expired."""

    def __init__(self):
        self.minted = 0
        self.lock = threading.Lock()

    def __call__(self, method, url, headers, data):
        if method == 'POST':
            with self.lock:
                self.minted += 1
                return reply(200, {'access_token': 'at-%d' % self.minted, 'expires_in': 7200, 'scopes': 'repository'})
        if headers['Authorization'] != 'Bearer at-%d' % self.minted or self.minted < 2:
            return reply(401, {'type': 'error', 'error': {'message': 'Access token expired.'}})
        return reply(200, {'values': [url]})


def test_client_credentials_renew_once_even_with_parallel_requests(tmp_path):
    server = ExpiringApi()
    http = FakeHttp(server)
    auth, dummy = build_auth({'client_id': 'i', 'client_secret': 's', 'cache_dir': str(tmp_path), 'timeout': 30}, http, environ={},
                             retry=RetryPolicy(sleep=NoSleep()))
    client = BitbucketClient(http, 'https://api.example/2.0', auth, retry=RetryPolicy(sleep=NoSleep()))
    threads = [threading.Thread(target=client.get, args=('repositories', str(n))) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.minted == 2  # the first token, then exactly one renewal
    assert auth.token.access_token == 'at-2'
    # The secret, its Basic form (i:s) and the token in use: what a front end must mask.
    assert set(auth.secrets()) == {'s', base64.b64encode(b'i:s').decode(), 'at-2'}


def test_a_cache_warning_is_reported_once_across_a_renewal(tmp_path):
    # The same TokenCache serves headers() and refresh(): its warnings must not be handed out twice.
    server = ExpiringApi()
    http = FakeHttp(server)
    auth, dummy = build_auth({'client_id': 'i', 'client_secret': 's', 'cache_dir': str(tmp_path), 'timeout': 30}, http,
                             environ={}, retry=RetryPolicy(sleep=NoSleep()))
    auth.cache.open_directory()
    try:
        with open(auth.cache.path, 'w') as handle:
            handle.write('not json')
    finally:
        auth.cache.close()
    BitbucketClient(http, API, auth, retry=RetryPolicy(sleep=NoSleep())).get('repositories', 'acme')
    assert server.minted == 2
    assert len(auth.warnings) == 1 and 'not valid JSON' in auth.warnings[0]


class RevokingApi(object):
    """An API that refuses every bearer token as invalid (revoked early), and counts token requests."""

    def __init__(self):
        self.token_requests = 0

    def __call__(self, method, url, headers, data):
        if method == 'POST':
            self.token_requests += 1
            return reply(200, {'access_token': 'api-minted-%d' % self.token_requests, 'expires_in': 7200})
        return reply(401, {'type': 'error', 'error': {'message': 'Token is invalid, expired, or not supported for this endpoint.'}})


def _cache_with(directory, access_token, principal=CONSUMER, refresh_token=None):
    cache = TokenCache(str(directory), TOKEN_URL, CLIENT_ID, principal)
    cache.open_directory()
    try:
        cache.write(Token(access_token, expires_at=time.time() + 3600, token_url=TOKEN_URL, client_id=CLIENT_ID,
                          refresh_token=refresh_token, grant_type='client_credentials', secret_check=secret_check(SECRET)))
    finally:
        cache.close()
    return cache


def _entry(cache):
    cache.open_directory(create=False)
    try:
        return cache.read(warn=False)
    finally:
        cache.close()


def test_a_rejected_access_token_from_the_cache_is_dropped_there(tmp_path):
    # The token came from oauth_token (or the lookup) and was passed on as access_token.
    directory = tmp_path / 'tokens'
    user = _cache_with(directory, 'revoked-token', principal='user:default', refresh_token='rt-kept')
    consumer = _cache_with(directory, 'consumer-token')
    api = RevokingApi()
    auth = AccessTokenAuth('revoked-token', str(directory))
    client = BitbucketClient(FakeHttp(api), API, auth, retry=RetryPolicy(sleep=NoSleep()))
    with pytest.raises(AuthenticationError) as info:
        client.get('repositories', 'acme')
    assert info.value.status == 401
    advice = auth.rejected()
    assert 'dropped from the token cache' in advice and 'force: true' in advice
    entry = _entry(user)
    assert entry.ttl() < 0 and entry.refresh_token == 'rt-kept'
    assert _entry(consumer).ttl() > 3000
    # A token that is not in the cache: the advice says how to get a new one.
    other = AccessTokenAuth('never-cached', str(directory)).rejected()
    assert 'dropped' not in other and 'force: true' in other
    assert api.token_requests == 0


def test_rejected_without_a_cache_never_creates_one(tmp_path):
    for auth in (AccessTokenAuth('some-token', str(tmp_path / 'missing' / 'tokens')), AccessTokenAuth('some-token')):
        assert 'force: true' in auth.rejected()
    assert not (tmp_path / 'missing').exists()


def test_client_credentials_rejected_drops_its_token_from_the_cache(tmp_path):
    api = RevokingApi()
    http = FakeHttp(api)
    auth, dummy = build_auth({'client_id': CLIENT_ID, 'client_secret': SECRET, 'token_url': TOKEN_URL,
                              'cache_dir': str(tmp_path), 'timeout': 30}, http, environ={}, retry=RetryPolicy(sleep=NoSleep()))
    client = BitbucketClient(http, API, auth, retry=RetryPolicy(sleep=NoSleep()))
    with pytest.raises(AuthenticationError):
        client.get('repositories', 'acme')
    assert auth.rejected() == ''
    assert _entry(auth.cache).access_token == 'api-minted-1' and _entry(auth.cache).ttl() < 0
    # The next task mints a new token instead of failing the same way until the old one expires.
    auth2, dummy = build_auth({'client_id': CLIENT_ID, 'client_secret': SECRET, 'token_url': TOKEN_URL,
                               'cache_dir': str(tmp_path), 'timeout': 30}, http, environ={}, retry=RetryPolicy(sleep=NoSleep()))
    assert auth2.headers() == {'Authorization': 'Bearer api-minted-2'}
    assert api.token_requests == 2


# --- argument specs ------------------------------------------------------------------------


@pytest.mark.parametrize('spec', [api_argument_spec(), token_argument_spec()])
def test_secrets_are_no_log_and_urls_explicitly_not(spec):
    for name, option in spec.items():
        if name in SECRET_OPTIONS:
            assert option.get('no_log') is True, name
        elif 'token' in name or 'secret' in name or 'pass' in name:
            assert option.get('no_log') is False, name


# --- URL options from the environment --------------------------------------------------------

DC_API = 'https://bitbucket.example/rest/api/1.0'
DC_TOKEN = 'https://bitbucket.example/rest/oauth2/latest/token'


def _validated(spec, monkeypatch, environ, **params):
    """Ansible's own argument validation (fallbacks, then defaults) with only `environ` as BITBUCKET_* variables."""
    for name in ('BITBUCKET_API_URL', 'BITBUCKET_TOKEN_URL'):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = ArgumentSpecValidator(spec).validate(params)
    assert result.error_messages == []
    return result.validated_parameters


@pytest.mark.parametrize('spec', [api_argument_spec(), token_argument_spec()])
def test_url_options_fall_back_to_the_environment(spec, monkeypatch):
    params = _validated(spec, monkeypatch, {'BITBUCKET_API_URL': DC_API, 'BITBUCKET_TOKEN_URL': DC_TOKEN})
    assert params['api_url'] == DC_API and params['token_url'] == DC_TOKEN


@pytest.mark.parametrize('value', ['', '  '])
@pytest.mark.parametrize('spec', [api_argument_spec(), token_argument_spec()])
def test_an_empty_url_variable_counts_as_unset(spec, value, monkeypatch):
    # AWX renders a blank optional credential input as "": the default must still apply.
    params = _validated(spec, monkeypatch, {'BITBUCKET_API_URL': value, 'BITBUCKET_TOKEN_URL': value})
    assert params['api_url'] == DEFAULT_API_URL and params['token_url'] is None


def test_without_url_variables_the_defaults_apply(monkeypatch):
    params = _validated(api_argument_spec(), monkeypatch, {})
    assert params['api_url'] == DEFAULT_API_URL and params['token_url'] is None


def test_url_options_given_in_the_task_win_over_the_environment(monkeypatch):
    params = _validated(api_argument_spec(), monkeypatch, {'BITBUCKET_API_URL': DC_API, 'BITBUCKET_TOKEN_URL': DC_TOKEN},
                        api_url=API, token_url=TOKEN_URL)
    assert params['api_url'] == API and params['token_url'] == TOKEN_URL


def test_env_url_fallback_reads_the_given_environment():
    assert env_url_fallback('BITBUCKET_API_URL', {'BITBUCKET_API_URL': DC_API}) == DC_API
    for environ in ({}, {'BITBUCKET_API_URL': ''}, {'BITBUCKET_API_URL': '\t'}):
        with pytest.raises(AnsibleFallbackNotFound):
            env_url_fallback('BITBUCKET_API_URL', environ)


# --- repositories and refs -----------------------------------------------------------------


@pytest.mark.parametrize('url, expected', [
    ('https://alice@bitbucket.org/acme/api.git', 'https://bitbucket.org/acme/api.git'),
    ('https://x-token-auth:secret@host:8443/acme/api.git', 'https://host:8443/acme/api.git'),
    ('https://bitbucket.org/acme/api.git', 'https://bitbucket.org/acme/api.git'),
    (None, None),
])
def test_strip_userinfo(url, expected):
    assert strip_userinfo(url) == expected


def test_repository_summary():
    repo = {
        'type': 'repository', 'full_name': 'acme/api', 'slug': 'api', 'name': 'API', 'uuid': '{u}', 'is_private': True,
        'workspace': {'slug': 'acme'}, 'project': {'key': 'PROJ'}, 'mainbranch': {'type': 'branch', 'name': 'main'},
        'description': 'd', 'language': 'python', 'size': 10, 'updated_on': '2026-01-01T00:00:00+00:00',
        'links': {'html': {'href': 'https://bitbucket.org/acme/api'},
                  'clone': [{'name': 'https', 'href': 'https://alice@bitbucket.org/acme/api.git'},
                            {'href': 'git@bitbucket.org:acme/api.git', 'name': 'ssh'}]},
    }
    assert repository_summary(repo) == {
        'full_name': 'acme/api', 'slug': 'api', 'name': 'API', 'uuid': '{u}', 'workspace': 'acme', 'project_key': 'PROJ',
        'is_private': True, 'mainbranch': 'main', 'description': 'd', 'language': 'python', 'size': 10,
        'updated_on': '2026-01-01T00:00:00+00:00', 'clone_url': 'https://bitbucket.org/acme/api.git',
        'ssh_url': 'git@bitbucket.org:acme/api.git', 'html_url': 'https://bitbucket.org/acme/api',
    }


def test_repository_summary_of_a_sparse_object():
    summary = repository_summary({'full_name': 'acme/empty'})
    assert summary['workspace'] == 'acme' and summary['slug'] == 'empty'
    assert summary['mainbranch'] is None and summary['clone_url'] is None and summary['project_key'] is None


def test_ref_summary():
    branch = {'type': 'branch', 'name': 'release/1.x', 'target': {'type': 'commit', 'hash': 'a' * 40, 'date': '2026-01-01'}}
    assert ref_summary(branch) == {'name': 'release/1.x', 'type': 'branch', 'commit': 'a' * 40, 'date': '2026-01-01'}
    tag = {'name': 'v1', 'date': '2026-02-02', 'target': {'hash': 'b' * 40}}
    assert ref_summary(tag, 'tag') == {'name': 'v1', 'type': 'tag', 'commit': 'b' * 40, 'date': '2026-02-02'}


@pytest.mark.parametrize('name, kind, expected', [
    ('main', 'branch', ('main', 'branch')),
    ('refs/heads/release/1.x', 'branch', ('release/1.x', 'branch')),
    ('refs/tags/v1.0.0', 'all', ('v1.0.0', 'tag')),
])
def test_split_ref_name(name, kind, expected):
    assert split_ref_name(name, kind) == expected


@pytest.mark.parametrize('name, kind', [('', 'branch'), ('a b', 'branch'), ('x~1', 'branch'), ('refs/tags/v1', 'branch')])
def test_split_ref_name_rejects(name, kind):
    with pytest.raises(ValidationError, match='name'):
        split_ref_name(name, kind)
