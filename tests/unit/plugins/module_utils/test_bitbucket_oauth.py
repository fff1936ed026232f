# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Token endpoint grants, scope parsing, the token cache and get_token()'s decisions."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
import time

from urllib.parse import parse_qs

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _oauth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import RetryPolicy
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    CacheError,
    ProtocolError,
    TokenRequestError,
    TransportError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import (
    Token,
    TokenCache,
    TokenEndpoint,
    cache_key,
    get_token,
    iso8601,
    parse_scopes,
)

from bitbucket_fakes import FakeHttp, NoSleep, Sequence, reply

TOKEN_URL = 'https://bitbucket.example/site/oauth2/access_token'
CLIENT_ID = 'demoKey1234567890ab'
SECRET = 'demoSecret+With/Odd=Chars0123456789'
NOW = 1795608000.0


class FakeServer(object):
    """A token endpoint: counts grants, optionally rotates refresh tokens, rejects listed ones."""

    def __init__(self, rotate=True, cc_refresh=False, scope_key='scope', dead_refresh=()):
        self.rotate = rotate
        self.cc_refresh = cc_refresh
        self.scope_key = scope_key
        self.dead = set(dead_refresh)
        self.grants = []
        self.serial = 0

    def __call__(self, method, url, headers, data):
        form = dict((k, v[0]) for k, v in parse_qs(data if isinstance(data, str) else data.decode()).items())
        expected = 'Basic ' + base64.b64encode(('%s:%s' % (CLIENT_ID, SECRET)).encode()).decode()
        if headers.get('Authorization') != expected:
            return reply(400, {'error_description': 'Invalid OAuth client credentials', 'error': 'unauthorized_client'})
        grant = form.get('grant_type')
        self.grants.append((grant, form.get('refresh_token') or form.get('code')))
        self.serial += 1
        body = {'access_token': 'at-%d' % self.serial, 'token_type': 'bearer', 'expires_in': 7200,
                self.scope_key: 'repository account', 'state': grant}
        if grant == 'refresh_token':
            if form['refresh_token'] in self.dead:
                return reply(400, {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'})
            if self.rotate:
                self.dead.add(form['refresh_token'])
                body['refresh_token'] = 'rt-%d' % self.serial
            else:
                body['refresh_token'] = form['refresh_token']
        elif grant == 'authorization_code':
            if form.get('code') != 'good-code':
                return reply(400, {'error': 'invalid_grant'})
            body['refresh_token'] = 'rt-%d' % self.serial
        elif grant == 'client_credentials':
            if self.cc_refresh:
                body['refresh_token'] = 'rt-%d' % self.serial
        else:
            return reply(400, {'error_description': 'Unsupported grant type: None', 'error': 'invalid_grant'})
        return reply(200, body)


def endpoint(server, secret=SECRET, sleep=None):
    return TokenEndpoint(FakeHttp(server), TOKEN_URL, CLIENT_ID, secret, retry=RetryPolicy(sleep=sleep or NoSleep()))


def make_cache(tmp_path, **kwargs):
    return TokenCache(str(tmp_path / 'tokens'), TOKEN_URL, CLIENT_ID, **kwargs)


def cached_token(**overrides):
    data = dict(access_token='cached-at', token_type='bearer', expires_at=NOW + 3600, scopes=['repository'],
                refresh_token=None, token_url=TOKEN_URL, client_id=CLIENT_ID, grant_type='client_credentials')
    data.update(overrides)
    return Token(**data)


# --- scopes and responses ------------------------------------------------------------------


@pytest.mark.parametrize('payload, scopes', [
    ({'scope': 'repository account'}, ['repository', 'account']),
    ({'scopes': 'repository account'}, ['repository', 'account']),
    ({'scope': 'pullrequest', 'scopes': 'repository account'}, ['pullrequest']),
    ({'scope': None, 'scopes': 'repository'}, ['repository']),
    ({'scopes': ['repository', 'account']}, ['repository', 'account']),
    ({'scopes': 'repository,account'}, ['repository', 'account']),
    ({'scope': ''}, []),
    ({}, []),
])
def test_parse_scopes(payload, scopes):
    assert parse_scopes(payload) == scopes


def test_parse_scopes_rejects_other_types():
    with pytest.raises(ProtocolError):
        parse_scopes({'scope': 5})


def test_token_from_response():
    token = Token.from_response({'access_token': 'a', 'expires_in': 7200, 'token_type': 'bearer', 'scopes': 'repository',
                                 'refresh_token': 'r', 'state': 'client_credentials'}, TOKEN_URL, CLIENT_ID, 'client_credentials', NOW)
    assert token.expires_at == NOW + 7200
    assert token.expires_in(NOW + 100) == 7100
    assert token.scopes == ['repository'] and token.refresh_token == 'r'
    assert iso8601(token.expires_at) == '2026-11-25T14:00:00Z'


@pytest.mark.parametrize('payload', [[], {'token_type': 'bearer'}, {'access_token': 'a', 'expires_in': 'soon'},
                                     {'access_token': 'a', 'refresh_token': 5}])
def test_bad_token_responses(payload):
    with pytest.raises(ProtocolError):
        Token.from_response(payload, TOKEN_URL, CLIENT_ID, 'client_credentials', NOW)


# --- the token endpoint --------------------------------------------------------------------


def test_grant_uses_raw_basic_auth_and_a_form_body():
    server = FakeServer()
    ep = endpoint(server)
    token = ep.grant('client_credentials', now=NOW)
    assert token.access_token == 'at-1' and token.scopes == ['repository', 'account']
    method, url, headers, data = ep.http.calls[0]
    assert method == 'POST' and url == TOKEN_URL
    assert headers['Content-Type'] == 'application/x-www-form-urlencoded'
    # Not form-encoded before base64: Bitbucket expects what curl -u sends.
    assert base64.b64decode(headers['Authorization'][6:]).decode() == '%s:%s' % (CLIENT_ID, SECRET)
    assert data == 'grant_type=client_credentials'


def test_wrong_secret_message_has_the_oauth_error_and_no_secret():
    with pytest.raises(TokenRequestError) as info:
        endpoint(FakeServer(), secret='wrong-secret').grant('client_credentials')
    message = str(info.value)
    assert message == ('POST %s (grant_type=client_credentials): HTTP 400: unauthorized_client: Invalid OAuth client credentials; '
                       'check client_id and client_secret' % TOKEN_URL)
    assert info.value.error == 'unauthorized_client'
    assert 'wrong-secret' not in message and SECRET not in message


def test_rejected_refresh_token_is_not_echoed():
    with pytest.raises(TokenRequestError) as info:
        endpoint(FakeServer(dead_refresh=['rt-dead-value'])).grant('refresh_token', refresh_token='rt-dead-value')
    assert info.value.error == 'invalid_request'
    assert 'Invalid refresh_token' in str(info.value) and 'rt-dead-value' not in str(info.value)


def test_token_endpoint_retries_rate_limits():
    server = FakeServer()
    answers = Sequence(reply(429, 'Rate limit for this resource has been exceeded', content_type='text/plain'))
    calls = []

    def handler(method, url, headers, data):
        calls.append(1)
        return answers(method, url, headers, data) if len(calls) == 1 else server(method, url, headers, data)
    assert endpoint(handler).grant('client_credentials').access_token == 'at-1'
    assert len(calls) == 2


def test_refresh_is_not_retried_over_a_dropped_connection():
    # The server may have consumed (and rotated away) the refresh token before the connection dropped.
    ep = endpoint(Sequence(TransportError('POST x: connection dropped by the server', kind='dropped')))
    with pytest.raises(TransportError):
        ep.grant('refresh_token', refresh_token='rt')
    assert len(ep.http.calls) == 1
    ep = endpoint(Sequence(TransportError('POST x: dropped', kind='dropped'), reply(200, {'access_token': 'a'})))
    assert ep.grant('client_credentials').access_token == 'a'


def test_html_answer_is_a_protocol_error():
    ep = endpoint(Sequence(reply(200, '<html>OpenID transaction in progress</html>', content_type='text/html')))
    with pytest.raises(ProtocolError, match='not JSON'):
        ep.grant('client_credentials')


@pytest.mark.parametrize('client_id, secret, match', [('', SECRET, 'client_id'), (CLIENT_ID, '', 'client_secret'),
                                                      (CLIENT_ID, None, 'client_secret')])
def test_endpoint_needs_id_and_secret(client_id, secret, match):
    with pytest.raises(ValidationError, match=match):
        TokenEndpoint(FakeHttp(FakeServer()), TOKEN_URL, client_id, secret)


# --- the cache -----------------------------------------------------------------------------


def test_cache_key_is_a_hash_of_url_and_id_only():
    key = cache_key(TOKEN_URL, CLIENT_ID)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != cache_key(TOKEN_URL, CLIENT_ID + 'x') != cache_key(TOKEN_URL + 'x', CLIENT_ID)
    cache = TokenCache('/tmp/x', TOKEN_URL, CLIENT_ID)
    for name in (cache.path, cache.lock_path):
        assert SECRET not in name and CLIENT_ID not in name


def test_cache_file_and_directory_modes(tmp_path):
    old = os.umask(0o022)
    try:
        cache = make_cache(tmp_path)
        result = get_token(endpoint(FakeServer()), cache, now=NOW)
    finally:
        os.umask(old)
    assert result.changed and not result.from_cache
    assert stat.S_IMODE(os.stat(cache.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600
    with open(cache.path) as handle:
        data = json.load(handle)
    assert data['access_token'] == 'at-1' and data['client_id'] == CLIENT_ID and data['token_url'] == TOKEN_URL
    assert data['expires_at'] == NOW + 7200 and data['scopes'] == ['repository', 'account']
    assert SECRET not in json.dumps(data)
    # Only the token file and its lock: no stray temporary files.
    assert sorted(os.listdir(cache.directory)) == sorted([os.path.basename(cache.path), os.path.basename(cache.lock_path)])


def test_existing_open_directory_is_tightened(tmp_path):
    directory = tmp_path / 'tokens'
    directory.mkdir(mode=0o755)
    os.chmod(str(directory), 0o755)
    make_cache(tmp_path).ensure_directory()
    assert stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o700


def test_cache_path_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / 'tokens').write_text('')
    with pytest.raises(CacheError, match='not a directory'):
        make_cache(tmp_path).ensure_directory()


def test_write_is_atomic(tmp_path, monkeypatch):
    cache = make_cache(tmp_path)
    cache.ensure_directory()
    cache.write(cached_token(access_token='first'))
    calls = []
    real_replace = os.replace

    def failing_replace(src, dst):
        calls.append((src, dst))
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(_oauth.os, 'replace', failing_replace)
    with pytest.raises(CacheError, match='No space left on device'):
        cache.write(cached_token(access_token='second'))
    monkeypatch.setattr(_oauth.os, 'replace', real_replace)
    # The temp file was in the same directory (so the rename is atomic) and is cleaned up.
    assert os.path.dirname(calls[0][0]) == cache.directory and calls[0][1] == cache.path
    assert not [name for name in os.listdir(cache.directory) if name.endswith('.tmp')]
    assert cache.read().access_token == 'first'


@pytest.mark.parametrize('content, reason', [
    ('{"this is": not json', 'not valid JSON'),
    ('[1, 2]', 'not a JSON object'),
    (json.dumps(dict(cached_token().to_dict(), client_id='someone-else')), 'another token_url or client_id'),
    (json.dumps(dict(cached_token().to_dict(), token_url='https://other.example/token')), 'another token_url or client_id'),
    (json.dumps(dict(cached_token().to_dict(), expires_at='tomorrow')), 'expires_at'),
    (json.dumps(dict(cached_token().to_dict(), scopes='repository')), 'scopes'),
    (json.dumps(dict(cached_token().to_dict(), access_token='')), 'access_token'),
    (b'\xff\xfe', 'not valid JSON'),
])
def test_corrupt_or_foreign_cache_file_is_replaced_with_a_warning(tmp_path, content, reason):
    cache = make_cache(tmp_path)
    cache.ensure_directory()
    with open(cache.path, 'wb') as handle:
        handle.write(content if isinstance(content, bytes) else content.encode())
    result = get_token(endpoint(FakeServer()), cache, now=NOW)
    assert result.changed and result.token.access_token == 'at-1'
    assert len(result.warnings) == 1
    assert reason in result.warnings[0] and cache.path in result.warnings[0] and 'replaced' in result.warnings[0]
    assert cache.read().access_token == 'at-1'


# --- get_token decisions -------------------------------------------------------------------


def test_valid_cached_token_is_returned_without_a_request(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    first = get_token(endpoint(server), cache, now=NOW)
    second = get_token(endpoint(server), cache, now=NOW + 600)
    assert (second.changed, second.from_cache) == (False, True)
    assert second.token.access_token == first.token.access_token
    assert len(server.grants) == 1


def test_min_ttl_decides_reuse(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    assert get_token(endpoint(server), cache, min_ttl=300, now=NOW + 6900).from_cache
    renewed = get_token(endpoint(server), cache, min_ttl=300, now=NOW + 6901)
    assert renewed.changed and renewed.token.access_token == 'at-2'


def test_no_cache_always_mints(tmp_path):
    server = FakeServer()
    for dummy in range(2):
        assert get_token(endpoint(server), None, now=NOW).changed
    assert len(server.grants) == 2


def test_check_mode_returns_a_valid_cached_token(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    result = get_token(endpoint(server), cache, check_mode=True, now=NOW)
    assert result.from_cache and not result.changed and result.token.access_token == 'at-1'
    assert len(server.grants) == 1


def test_check_mode_mints_nothing(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    result = get_token(endpoint(server), cache, check_mode=True, now=NOW)
    assert result.changed and result.token is None and 'check mode' in result.msg
    assert server.grants == [] and not os.path.exists(cache.directory)
    result = get_token(endpoint(server), None, check_mode=True, now=NOW)
    assert result.changed and result.token is None and server.grants == []


def test_cached_refresh_token_is_used_and_rotation_saved(tmp_path):
    server = FakeServer(rotate=True, cc_refresh=True)
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    result = get_token(endpoint(server), cache, min_ttl=7199, now=NOW + 10)
    assert server.grants == [('client_credentials', None), ('refresh_token', 'rt-1')]
    assert result.token.refresh_token == 'rt-2' and result.grant_type == 'refresh_token'
    assert cache.read().refresh_token == 'rt-2'


def test_stable_refresh_token_is_kept(tmp_path):
    server = FakeServer(rotate=False, cc_refresh=True)
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    get_token(endpoint(server), cache, min_ttl=7199, now=NOW + 10)
    assert cache.read().refresh_token == 'rt-1'


def test_rejected_cached_refresh_token_falls_back_to_client_credentials(tmp_path):
    server = FakeServer(cc_refresh=True, dead_refresh=['rt-1'])
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    result = get_token(endpoint(server), cache, min_ttl=7199, now=NOW + 10)
    assert [grant for grant, dummy in server.grants] == ['client_credentials', 'refresh_token', 'client_credentials']
    assert result.changed and result.grant_type == 'client_credentials'


def test_explicit_refresh_grant_with_a_dead_token_is_an_error(tmp_path):
    server = FakeServer(dead_refresh=['rt-given'])
    with pytest.raises(TokenRequestError, match='invalid_request: Invalid refresh_token'):
        get_token(endpoint(server), None, grant_type='refresh_token', refresh_token='rt-given', now=NOW)
    assert [grant for grant, dummy in server.grants] == ['refresh_token']


def test_explicit_refresh_prefers_the_newer_cached_refresh_token(tmp_path):
    server = FakeServer(rotate=True)
    cache = make_cache(tmp_path)
    first = get_token(endpoint(server), cache, grant_type='refresh_token', refresh_token='rt-start', now=NOW)
    assert first.token.refresh_token == 'rt-1'
    get_token(endpoint(server), cache, grant_type='refresh_token', refresh_token='rt-start', min_ttl=7199, now=NOW + 10)
    assert server.grants == [('refresh_token', 'rt-start'), ('refresh_token', 'rt-1')]


def test_authorization_code_once_then_cache_then_refresh(tmp_path):
    server = FakeServer(rotate=True)
    cache = make_cache(tmp_path)
    first = get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', now=NOW)
    assert first.changed and first.token.refresh_token == 'rt-1'
    again = get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', now=NOW + 60)
    assert again.from_cache
    later = get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', min_ttl=7199, now=NOW + 120)
    assert later.grant_type == 'refresh_token'
    assert [grant for grant, dummy in server.grants] == ['authorization_code', 'refresh_token']


def test_bad_authorization_code_says_what_to_do():
    with pytest.raises(TokenRequestError, match='single-use'):
        get_token(endpoint(FakeServer()), None, grant_type='authorization_code', code='stale-code', now=NOW)


@pytest.mark.parametrize('kwargs, match', [
    ({'grant_type': 'password'}, 'grant_type must be one of'),
    ({'grant_type': 'refresh_token'}, 'needs refresh_token'),
    ({'grant_type': 'authorization_code'}, 'needs code'),
    ({'min_ttl': -1}, 'min_ttl'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        get_token(endpoint(FakeServer()), None, **kwargs)


def test_force_with_reject_reuses_a_token_another_process_minted(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    cache.ensure_directory()
    cache.write(cached_token(access_token='newer-from-elsewhere'))
    result = get_token(endpoint(server), cache, force=True, reject='the-expired-one', now=NOW)
    assert result.token.access_token == 'newer-from-elsewhere' and server.grants == []
    result = get_token(endpoint(server), cache, force=True, reject='newer-from-elsewhere', now=NOW)
    assert result.changed and result.token.access_token == 'at-1'


# --- the lock across processes -------------------------------------------------------------


class CountingEndpoint(object):
    """Stands in for TokenEndpoint in forked workers: counts mints in shared memory, slowly."""

    def __init__(self, counter):
        self.counter = counter
        self.token_url = TOKEN_URL
        self.client_id = CLIENT_ID

    def grant(self, grant_type, now=None, **fields):
        with self.counter.get_lock():
            self.counter.value += 1
            serial = self.counter.value
        time.sleep(0.3)  # a slow token endpoint widens the race window
        return Token('minted-%d' % serial, expires_at=time.time() + 7200, token_url=TOKEN_URL, client_id=CLIENT_ID,
                     grant_type=grant_type)


def _worker(directory, counter, barrier, results):
    barrier.wait()
    cache = TokenCache(directory, TOKEN_URL, CLIENT_ID)
    result = get_token(CountingEndpoint(counter), cache)
    results.put((result.token.access_token, result.changed))


def test_lock_makes_concurrent_processes_mint_once(tmp_path):
    context = multiprocessing.get_context('fork')
    counter = context.Value('i', 0)
    workers = 20
    barrier = context.Barrier(workers)
    results = context.Queue()
    directory = str(tmp_path / 'tokens')
    processes = [context.Process(target=_worker, args=(directory, counter, barrier, results)) for dummy in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for dummy in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert counter.value == 1
    assert set(token for token, dummy in outcomes) == {'minted-1'}
    assert sum(1 for dummy, changed in outcomes if changed) == 1


def test_lock_timeout_is_a_clear_error(tmp_path):
    holder = make_cache(tmp_path)
    holder.ensure_directory()
    holder.acquire()
    try:
        waiter = make_cache(tmp_path, lock_timeout=0.2)
        with pytest.raises(CacheError, match='timed out .* waiting for the token cache lock'):
            waiter.acquire()
    finally:
        holder.release()
