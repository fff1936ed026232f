# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Token endpoint grants, scope parsing, the token cache and get_token()'s decisions."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import multiprocessing
import os
import stat
import time

from urllib.parse import quote, quote_plus

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _oauth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import RetryPolicy
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    CacheError,
    ProtocolError,
    TokenRequestError,
    TransportError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import request_token
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import (
    CONSUMER,
    Token,
    TokenCache,
    TokenEndpoint,
    cache_key,
    forget_rejected_token,
    get_token,
    iso8601,
    parse_scopes,
    principal_for,
    secret_check,
)

from bitbucket_fakes import CLIENT_ID, SECRET, FakeHttp, FakeTokenServer, NoSleep, Sequence, reply

TOKEN_URL = 'https://bitbucket.example/site/oauth2/access_token'
NOW = 1795608000.0
USER = 'user:default'
# Computed once: the hash is deliberately slow.
SECRET_CHECK = secret_check(SECRET)
FakeServer = FakeTokenServer


def endpoint(server, secret=SECRET, sleep=None):
    return TokenEndpoint(FakeHttp(server), TOKEN_URL, CLIENT_ID, secret, retry=RetryPolicy(sleep=sleep or NoSleep()))


def make_cache(tmp_path, principal=CONSUMER, **kwargs):
    return TokenCache(str(tmp_path / 'tokens'), TOKEN_URL, CLIENT_ID, principal, **kwargs)


def cached_token(**overrides):
    data = dict(access_token='cached-at', token_type='bearer', expires_at=NOW + 3600, scopes=['repository'],
                refresh_token=None, token_url=TOKEN_URL, client_id=CLIENT_ID, principal=CONSUMER,
                grant_type='client_credentials', secret_check=SECRET_CHECK)
    data.update(overrides)
    return Token(**data)


def stored(cache):
    """What the cache file holds now (None if nothing usable), read through a freshly opened directory."""
    if not cache.open_directory(create=False):
        return None
    try:
        return cache.read(warn=False)
    finally:
        cache.close()


def put(cache, token):
    """Write token as the cache entry, as another process would."""
    cache.open_directory()
    try:
        cache.write(token)
    finally:
        cache.close()


def raw_files(directory):
    """{name: bytes} of every file in directory."""
    result = {}
    for name in sorted(os.listdir(str(directory))):
        with open(os.path.join(str(directory), name), 'rb') as handle:
            result[name] = handle.read()
    return result


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


def test_cache_key_is_a_hash_of_url_id_and_principal_only():
    key = cache_key(TOKEN_URL, CLIENT_ID, CONSUMER)
    assert len(key) == 64 and int(key, 16) >= 0
    others = {cache_key(TOKEN_URL, CLIENT_ID + 'x', CONSUMER), cache_key(TOKEN_URL + 'x', CLIENT_ID, CONSUMER),
              cache_key(TOKEN_URL, CLIENT_ID, USER), cache_key(TOKEN_URL, CLIENT_ID, 'user:alice')}
    assert key not in others and len(others) == 4
    cache = TokenCache('/tmp/x', TOKEN_URL, CLIENT_ID)
    assert cache.key == key and cache.principal == CONSUMER
    for name in (cache.path, cache.lock_path):
        assert SECRET not in name and CLIENT_ID not in name


@pytest.mark.parametrize('grant_type, cache_entry, principal', [
    ('client_credentials', None, CONSUMER),
    ('authorization_code', None, USER),
    ('refresh_token', None, USER),
    ('refresh_token', 'alice@example.com', 'user:alice@example.com'),
    ('authorization_code', 'ops-team_2', 'user:ops-team_2'),
])
def test_principal_for(grant_type, cache_entry, principal):
    assert principal_for(grant_type, cache_entry) == principal


@pytest.mark.parametrize('grant_type, cache_entry, match', [
    ('client_credentials', 'alice', 'client_credentials acts as the OAuth consumer'),
    ('refresh_token', 'a/b', 'cache_entry must be'),
    ('refresh_token', '../x', 'cache_entry must be'),
    ('refresh_token', 'x' * 65, 'cache_entry must be'),
    ('authorization_code', 'with space', 'cache_entry must be'),
])
def test_principal_for_refuses(grant_type, cache_entry, match):
    with pytest.raises(ValidationError, match=match):
        principal_for(grant_type, cache_entry)


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
    assert stat.S_IMODE(os.stat(cache.lock_path).st_mode) == 0o600
    with open(cache.path) as handle:
        data = json.load(handle)
    assert data['access_token'] == 'at-1' and data['client_id'] == CLIENT_ID and data['token_url'] == TOKEN_URL
    assert data['principal'] == CONSUMER and data['version'] == 2
    assert data['expires_at'] == NOW + 7200 and data['scopes'] == ['repository', 'account']
    assert SECRET not in json.dumps(data)
    # Only the token file and its lock: no stray temporary files.
    assert sorted(os.listdir(cache.directory)) == sorted([cache.name, cache.lock_name])


def test_existing_open_directory_is_refused_and_left_alone(tmp_path):
    # Never chmod a directory we did not create: the user is told what to do instead.
    directory = tmp_path / 'tokens'
    directory.mkdir()
    os.chmod(str(directory), 0o755)
    with pytest.raises(CacheError, match='open to other users \\(mode 0755\\); run chmod 700 on it'):
        make_cache(tmp_path).open_directory()
    assert stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o755
    assert os.listdir(str(directory)) == []


def test_cache_path_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / 'tokens').write_text('')
    with pytest.raises(CacheError, match='not a directory'):
        make_cache(tmp_path).open_directory()


def test_failed_write_keeps_the_old_entry_and_leaves_no_temp_file(tmp_path, monkeypatch):
    # Atomicity itself (a reader never sees part of a file) is proven in test_cache_atomic.py.
    cache = make_cache(tmp_path)
    put(cache, cached_token(access_token='first'))
    calls = []

    def failing_replace(src, dst, **kwargs):
        calls.append((src, dst, kwargs))
        raise OSError(28, 'No space left on device')
    cache.open_directory()
    try:
        monkeypatch.setattr(_oauth.os, 'replace', failing_replace)
        with pytest.raises(CacheError, match='No space left on device'):
            cache.write(cached_token(access_token='second'))
        monkeypatch.undo()
        # The rename stays inside the one open directory.
        (src, dst, kwargs), = calls
        assert dst == cache.name and kwargs == {'src_dir_fd': cache.dir_fd, 'dst_dir_fd': cache.dir_fd}
    finally:
        cache.close()
    assert os.listdir(cache.directory) == [cache.name]
    assert stored(cache).access_token == 'first'


def test_read_and_write_need_an_open_directory(tmp_path, monkeypatch):
    # Without open_directory() the descriptor is None, and os.open(..., dir_fd=None) would work
    # relative to the current directory: a cache file must never land wherever the process runs.
    monkeypatch.chdir(tmp_path)
    cache = TokenCache(str(tmp_path / 'tokens'), TOKEN_URL, CLIENT_ID)
    with pytest.raises(CacheError):
        cache.write(cached_token())
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('content, reason', [
    ('{"this is": not json', 'not valid JSON'),
    ('[1, 2]', 'not a JSON object'),
    (json.dumps(dict(cached_token().to_dict(), version=1)), 'not in cache format 2'),
    (json.dumps(dict(cached_token().to_dict(), client_id='someone-else')), 'another token_url, client_id or cache entry'),
    (json.dumps(dict(cached_token().to_dict(), token_url='https://other.example/token')), 'another token_url'),
    (json.dumps(dict(cached_token().to_dict(), principal=USER)), 'another token_url, client_id or cache entry'),
    (json.dumps(dict(cached_token().to_dict(), expires_at='tomorrow')), 'expires_at'),
    (json.dumps(dict(cached_token().to_dict(), scopes='repository')), 'scopes'),
    (json.dumps(dict(cached_token().to_dict(), access_token='')), 'access_token'),
    (json.dumps(dict(cached_token().to_dict(), secret_check=None)), 'secret_check'),
    (b'\xff\xfe', 'not valid JSON'),
])
def test_corrupt_or_foreign_cache_file_is_replaced_with_a_warning(tmp_path, content, reason):
    cache = make_cache(tmp_path)
    cache.open_directory()
    cache.close()
    with open(cache.path, 'wb') as handle:
        handle.write(content if isinstance(content, bytes) else content.encode())
    result = get_token(endpoint(FakeServer()), cache, now=NOW)
    assert result.changed and result.token.access_token == 'at-1'
    assert len(result.warnings) == 1
    assert reason in result.warnings[0] and cache.path in result.warnings[0] and 'replaced' in result.warnings[0]
    assert stored(cache).access_token == 'at-1'


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


def test_there_is_no_check_mode_at_this_level(tmp_path):
    # Minting changes nothing on Bitbucket: check mode mints and saves like a normal run, so the
    # token layer does not know about it, and the cache checks cannot be skipped by it.
    assert 'check_mode' not in inspect.signature(get_token).parameters
    assert 'check_mode' not in inspect.signature(request_token).parameters
    server = FakeServer()
    cache = make_cache(tmp_path)
    result = get_token(endpoint(server), cache, now=NOW)
    assert result.changed and result.token.access_token == 'at-1' and stored(cache).access_token == 'at-1'
    assert get_token(endpoint(server), None, now=NOW).token.access_token == 'at-2'


def test_cached_refresh_token_is_used_and_rotation_saved(tmp_path):
    server = FakeServer(rotate=True, cc_refresh=True)
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    result = get_token(endpoint(server), cache, min_ttl=7199, now=NOW + 10)
    assert server.grants == [('client_credentials', None), ('refresh_token', 'rt-1')]
    assert result.token.refresh_token == 'rt-2' and result.token.grant_type == 'refresh_token'
    assert stored(cache).refresh_token == 'rt-2'


def test_stable_refresh_token_is_kept(tmp_path):
    server = FakeServer(rotate=False, cc_refresh=True)
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    get_token(endpoint(server), cache, min_ttl=7199, now=NOW + 10)
    assert stored(cache).refresh_token == 'rt-1'


def test_rejected_cached_refresh_token_falls_back_to_client_credentials(tmp_path):
    server = FakeServer(cc_refresh=True, dead_refresh=['rt-1'])
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    result = get_token(endpoint(server), cache, min_ttl=7199, now=NOW + 10)
    assert [grant for grant, dummy in server.grants] == ['client_credentials', 'refresh_token', 'client_credentials']
    assert result.changed and result.token.grant_type == 'client_credentials'


def test_explicit_refresh_grant_with_a_dead_token_is_an_error(tmp_path):
    server = FakeServer(dead_refresh=['rt-given'])
    with pytest.raises(TokenRequestError, match='invalid_request: Invalid refresh_token'):
        get_token(endpoint(server), None, grant_type='refresh_token', refresh_token='rt-given', now=NOW)
    assert [grant for grant, dummy in server.grants] == ['refresh_token']


def test_explicit_refresh_prefers_the_newer_cached_refresh_token(tmp_path):
    server = FakeServer(rotate=True)
    cache = make_cache(tmp_path, USER)
    first = get_token(endpoint(server), cache, grant_type='refresh_token', refresh_token='rt-start', now=NOW)
    assert first.token.refresh_token == 'rt-1'
    get_token(endpoint(server), cache, grant_type='refresh_token', refresh_token='rt-start', min_ttl=7199, now=NOW + 10)
    assert server.grants == [('refresh_token', 'rt-start'), ('refresh_token', 'rt-1')]


def test_authorization_code_is_always_exchanged_then_the_refresh_grant_uses_the_entry(tmp_path):
    server = FakeServer(rotate=True)
    cache = make_cache(tmp_path, USER)
    first = get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', now=NOW)
    assert first.changed and first.token.refresh_token == 'rt-1' and first.warnings == []
    # A code is a request for a new grant: exchanged although the entry holds a good token.
    again = get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', now=NOW + 60)
    assert again.changed and not again.from_cache and again.token.access_token == 'at-2'
    # Later runs: grant_type=refresh_token without a refresh_token option.
    cached = get_token(endpoint(server), cache, grant_type='refresh_token', now=NOW + 120)
    assert cached.from_cache and cached.token.access_token == 'at-2'
    later = get_token(endpoint(server), cache, grant_type='refresh_token', min_ttl=7199, now=NOW + 180)
    assert later.changed and later.token.grant_type == 'refresh_token' and later.token.refresh_token == 'rt-3'
    assert server.grants == [('authorization_code', 'good-code'), ('authorization_code', 'good-code'),
                             ('refresh_token', 'rt-2')]


def test_bad_authorization_code_says_what_to_do():
    with pytest.raises(TokenRequestError, match='single-use'):
        get_token(endpoint(FakeServer()), None, grant_type='authorization_code', code='stale-code', now=NOW)


@pytest.mark.parametrize('kwargs, match', [
    ({'grant_type': 'password'}, 'grant_type must be one of'),
    ({'grant_type': 'refresh_token'}, 'needs refresh_token when cache is false'),
    ({'grant_type': 'authorization_code'}, 'needs code'),
    ({'min_ttl': -1}, 'min_ttl'),
    ({'min_ttl': 86400}, 'min_ttl'),
    ({'min_ttl': True}, 'min_ttl'),
])
def test_bad_arguments(kwargs, match):
    server = FakeServer()
    with pytest.raises(ValidationError, match=match):
        get_token(endpoint(server), None, **kwargs)
    assert server.grants == []


def test_reject_reuses_a_token_another_process_minted(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    put(cache, cached_token(access_token='newer-from-elsewhere'))
    result = get_token(endpoint(server), cache, reject='the-expired-one', now=NOW)
    assert result.from_cache and result.token.access_token == 'newer-from-elsewhere' and server.grants == []
    result = get_token(endpoint(server), cache, reject='newer-from-elsewhere', now=NOW)
    assert result.changed and result.token.access_token == 'at-1'
    assert stored(cache).access_token == 'at-1'


def test_force_mints_now_whatever_the_cache_holds(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path)
    put(cache, cached_token(access_token='still-good'))
    result = get_token(endpoint(server), cache, force=True, now=NOW)
    assert result.changed and result.token.access_token == 'at-1' and stored(cache).access_token == 'at-1'
    result = get_token(endpoint(server), cache, force=True, reject='something-else', now=NOW)
    assert result.token.access_token == 'at-2' and len(server.grants) == 2


# --- issue 6: whose token, which secret, and a way back from a rejected token ----------------


def request(tmp_path, server, secret=SECRET, **options):
    """The oauth_token module's and lookup's path: request_token() with the module's options."""
    params = dict(token_url=TOKEN_URL, grant_type='client_credentials', refresh_token=None, code=None,
                  redirect_uri=None, cache_entry=None, min_ttl=300, force=False, cache=True,
                  cache_dir=str(tmp_path / 'tokens'))
    params.update(options)
    return request_token(params, FakeHttp(server), {'client_id': CLIENT_ID, 'client_secret': secret})


def authorize(tmp_path, server, **options):
    return request(tmp_path, server, grant_type='authorization_code', code='good-code', **options)


def test_a_code_is_exchanged_with_a_warm_consumer_cache(tmp_path):
    server = FakeServer()
    consumer = request(tmp_path, server)
    user = authorize(tmp_path, server)
    assert server.grants == [('client_credentials', None), ('authorization_code', 'good-code')]
    assert user.changed and not user.from_cache
    assert user.token.access_token == 'at-2' and user.token.refresh_token == 'rt-2'
    # And the consumer's entry is still there, untouched.
    again = request(tmp_path, server)
    assert again.from_cache and again.token.access_token == consumer.token.access_token == 'at-1'


def test_a_code_is_exchanged_even_when_the_user_entry_is_warm(tmp_path):
    server = FakeServer()
    authorize(tmp_path, server)
    second = authorize(tmp_path, server)
    assert second.changed and second.token.access_token == 'at-2'
    assert [grant for grant, dummy in server.grants] == ['authorization_code', 'authorization_code']


def test_a_new_authorization_warns_when_it_replaces_a_refresh_token(tmp_path):
    server = FakeServer()
    assert authorize(tmp_path, server, cache_entry='alice').warnings == []
    warnings = authorize(tmp_path, server, cache_entry='alice').warnings
    assert len(warnings) == 1
    assert "replaced the refresh token of cache entry 'alice'" in warnings[0] and 'cache_entry' in warnings[0]
    # Another entry is another user: nothing replaced, nothing to warn about.
    assert authorize(tmp_path, server, cache_entry='bob').warnings == []


def test_a_user_token_never_stands_in_for_the_consumer(tmp_path):
    server = FakeServer()
    user = authorize(tmp_path, server)
    consumer = request(tmp_path, server)
    assert consumer.changed and consumer.token.access_token == 'at-2' != user.token.access_token
    assert consumer.token.grant_type == 'client_credentials'
    assert [grant for grant, dummy in server.grants] == ['authorization_code', 'client_credentials']


def test_the_consumer_token_never_stands_in_for_a_user(tmp_path):
    server = FakeServer(cc_refresh=True)
    consumer = request(tmp_path, server)
    user = request(tmp_path, server, grant_type='refresh_token', refresh_token='rt-given')
    assert user.changed and user.token.access_token == 'at-2' != consumer.token.access_token
    # Nor does the consumer's refresh token: only the one the user gave is offered.
    assert server.grants == [('client_credentials', None), ('refresh_token', 'rt-given')]


def test_two_users_keep_separate_entries(tmp_path):
    server = FakeServer()
    alice = authorize(tmp_path, server, cache_entry='alice')
    bob = authorize(tmp_path, server, cache_entry='bob')
    assert alice.token.access_token != bob.token.access_token
    for entry, expected in (('alice', alice), ('bob', bob)):
        again = request(tmp_path, server, grant_type='refresh_token', cache_entry=entry)
        assert again.from_cache and again.token.access_token == expected.token.access_token
    assert len(server.grants) == 2
    assert len([name for name in os.listdir(str(tmp_path / 'tokens')) if name.endswith('.json')]) == 2


def test_cache_entry_is_refused_for_the_consumer(tmp_path):
    server = FakeServer()
    with pytest.raises(ValidationError, match='cache_entry'):
        request(tmp_path, server, cache_entry='alice')
    assert server.grants == []


def test_refresh_grant_without_refresh_token_uses_the_cached_one(tmp_path):
    server = FakeServer()
    cache = make_cache(tmp_path, USER)
    get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', now=NOW)
    result = get_token(endpoint(server), cache, grant_type='refresh_token', force=True, now=NOW + 10)
    assert result.changed and result.token.refresh_token == 'rt-2'
    assert server.grants == [('authorization_code', 'good-code'), ('refresh_token', 'rt-1')]
    assert stored(cache).refresh_token == 'rt-2'


def test_a_spent_cached_refresh_token_says_what_to_do(tmp_path):
    """A stale copy of the cache (another controller already rotated the refresh token) fails with the way out."""
    server = FakeServer()
    cache = make_cache(tmp_path, USER)
    get_token(endpoint(server), cache, grant_type='authorization_code', code='good-code', now=NOW)
    server.dead.add('rt-1')
    with pytest.raises(TokenRequestError) as info:
        get_token(endpoint(server), cache, grant_type='refresh_token', force=True, now=NOW + 10)
    assert str(info.value).endswith(
        "invalid_request: Invalid refresh_token; the refresh token of cache entry 'default' was refused: each one works "
        "once, so another controller with a copy of this cache may have used it; authorize again with the "
        "codeferry.bitbucket.authorize playbook")
    assert 'rt-1' not in str(info.value)
    assert stored(cache).refresh_token == 'rt-1'


@pytest.mark.parametrize('entry', [None, 'alice'])
def test_refresh_grant_without_any_refresh_token_says_what_to_do(tmp_path, entry):
    server = FakeServer()
    # An entry with an access token but no refresh token fails the same way as no entry at all.
    put(TokenCache(str(tmp_path / 'tokens'), TOKEN_URL, CLIENT_ID, principal_for('refresh_token', 'bob')),
        cached_token(principal='user:bob', expires_at=0))
    with pytest.raises(ValidationError) as info:
        request(tmp_path, server, grant_type='refresh_token', cache_entry=entry)
    assert str(info.value) == ("grant_type=refresh_token needs refresh_token: cache entry '%s' holds none; authorize once "
                               "with the codeferry.bitbucket.authorize playbook" % (entry or 'default'))
    with pytest.raises(ValidationError, match="cache entry 'bob' holds none"):
        request(tmp_path, server, grant_type='refresh_token', cache_entry='bob')
    assert server.grants == []


def test_a_different_secret_is_a_cache_miss_and_the_server_answers(tmp_path):
    server = FakeServer()
    request(tmp_path, server)
    with pytest.raises(TokenRequestError, match='unauthorized_client.*check client_id and client_secret'):
        request(tmp_path, server, secret='mistyped-secret')
    # The entry is only replaced when the new secret produced a token.
    assert stored(make_cache(tmp_path)).access_token == 'at-1'
    # The consumer's secret is rotated: both work for a while, each is bound to its own token.
    server.secrets.add('rotated-secret')
    rotated = request(tmp_path, server, secret='rotated-secret')
    assert rotated.changed and rotated.token.access_token == 'at-2'
    assert request(tmp_path, server, secret='rotated-secret').from_cache
    assert request(tmp_path, server).token.access_token == 'at-3'
    assert [grant for grant, dummy in server.grants] == ['client_credentials'] * 3


def test_the_refresh_token_is_still_offered_with_another_secret(tmp_path):
    # Bitbucket checks the secret when the refresh token is used, so offering it is safe.
    server = FakeServer(secrets=(SECRET, 'rotated-secret'))
    authorize(tmp_path, server)
    result = request(tmp_path, server, secret='rotated-secret', grant_type='refresh_token')
    assert result.changed and result.token.access_token == 'at-2'
    assert server.grants == [('authorization_code', 'good-code'), ('refresh_token', 'rt-1')]


def test_the_secret_is_bound_to_the_entry_by_a_salted_hash_only(tmp_path):
    server = FakeServer(secrets=(SECRET, 'rotated-secret'))
    request(tmp_path, server)
    directory = tmp_path / 'tokens'
    first = raw_files(directory)
    request(tmp_path, server, secret='rotated-secret')
    second = raw_files(directory)
    # One entry whatever the secret: the file name does not depend on it.
    assert sorted(first) == sorted(second) == sorted([make_cache(tmp_path).name, make_cache(tmp_path).lock_name])
    basic = base64.b64encode(('%s:%s' % (CLIENT_ID, SECRET)).encode()).decode()
    for secret, files in ((SECRET, first), ('rotated-secret', second)):
        pair = '%s:%s' % (CLIENT_ID, secret)
        forms = [secret, quote(secret, safe=''), quote_plus(secret), json.dumps(secret)[1:-1],
                 base64.b64encode(secret.encode()).decode(), base64.b64encode(pair.encode()).decode(), secret.encode().hex(),
                 hashlib.sha256(secret.encode()).hexdigest(), hashlib.sha256(pair.encode()).hexdigest()]
        for name, content in files.items():
            for form in forms + [basic]:
                assert form not in name and form.encode() not in content, (name, form)
        data = json.loads(files[make_cache(tmp_path).name])
        check = data['secret_check']
        assert sorted(check) == ['hash', 'salt'] and len(check['salt']) == 32 and len(check['hash']) == 64
        assert secret_check(secret, check['salt']) == check
    # Salted: the same secret gives another hash in another entry.
    request(tmp_path, server, force=True)
    assert json.loads(raw_files(directory)[make_cache(tmp_path).name])['secret_check'] != \
        json.loads(first[make_cache(tmp_path).name])['secret_check']


def test_minted_with_this_secret():
    token = endpoint(FakeServer()).grant('client_credentials', now=NOW)
    assert endpoint(None).minted_with_this_secret(token)
    assert not endpoint(None, secret=SECRET + 'x').minted_with_this_secret(token)
    assert not endpoint(None, secret=SECRET[:-1]).minted_with_this_secret(token)
    token.secret_check = None
    assert not endpoint(None).minted_with_this_secret(token)


def test_forget_expires_the_entry_and_keeps_its_refresh_token(tmp_path):
    server = FakeServer(cc_refresh=True)
    cache = make_cache(tmp_path)
    get_token(endpoint(server), cache, now=NOW)
    cache.open_directory()
    try:
        assert cache.forget('at-1') is True
    finally:
        cache.close()
    entry = stored(cache)
    assert entry.ttl(NOW) < 0 and entry.refresh_token == 'rt-1'
    # The next run recovers by itself, with the refresh token that was kept.
    result = get_token(endpoint(server), cache, now=NOW + 10)
    assert result.changed and result.token.access_token == 'at-2'
    assert server.grants == [('client_credentials', None), ('refresh_token', 'rt-1')]


def test_forget_leaves_an_entry_with_another_token_alone(tmp_path):
    cache = make_cache(tmp_path)
    put(cache, cached_token(access_token='the-current-one'))
    before = raw_files(cache.directory)
    cache.open_directory()
    try:
        assert cache.forget('an-older-one') is False
    finally:
        cache.close()
    after = raw_files(cache.directory)
    assert after[cache.name] == before[cache.name]
    assert stored(cache).ttl(NOW) == 3600


def test_forget_rejected_token_expires_only_the_entry_that_holds_it(tmp_path):
    consumer, user, other = make_cache(tmp_path), make_cache(tmp_path, USER), make_cache(tmp_path, 'user:bob')
    put(consumer, cached_token(access_token='consumer-token'))
    put(user, cached_token(access_token='rejected-token', principal=USER, refresh_token='rt-user',
                           grant_type='authorization_code'))
    put(other, cached_token(access_token='bob-token', principal='user:bob'))
    (tmp_path / 'tokens' / 'notes.txt').write_text('not a cache file')
    before = raw_files(tmp_path / 'tokens')
    assert forget_rejected_token(str(tmp_path / 'tokens'), 'rejected-token') is True
    after = raw_files(tmp_path / 'tokens')
    # Only that entry changed (forget() also made its lock file).
    assert [name for name in after if after[name] != before.get(name)] == sorted([user.name, user.lock_name])
    entry = stored(user)
    assert entry.ttl(NOW) < 0 and entry.refresh_token == 'rt-user'
    assert stored(consumer).ttl(NOW) == 3600 and stored(other).ttl(NOW) == 3600
    assert forget_rejected_token(str(tmp_path / 'tokens'), 'unknown-token') is False
    assert raw_files(tmp_path / 'tokens') == after


def test_forget_rejected_token_never_creates_the_directory(tmp_path):
    directory = tmp_path / 'missing' / 'tokens'
    assert forget_rejected_token(str(directory), 'some-token') is False
    assert not (tmp_path / 'missing').exists()


# --- the lock across processes -------------------------------------------------------------


class CountingEndpoint(object):
    """Stands in for TokenEndpoint in forked workers: counts mints in shared memory, slowly."""

    def __init__(self, counter):
        self.counter = counter
        self.token_url = TOKEN_URL
        self.client_id = CLIENT_ID
        self.flavor = 'cloud'

    def minted_with_this_secret(self, token):
        return token.secret_check == SECRET_CHECK

    def grant(self, grant_type, now=None, **fields):
        with self.counter.get_lock():
            self.counter.value += 1
            serial = self.counter.value
        time.sleep(0.3)  # a slow token endpoint widens the race window
        return Token('minted-%d' % serial, expires_at=time.time() + 7200, token_url=TOKEN_URL, client_id=CLIENT_ID,
                     grant_type=grant_type, secret_check=SECRET_CHECK)


def _worker(directory, counter, barrier, results):
    barrier.wait()
    cache = TokenCache(directory, TOKEN_URL, CLIENT_ID)
    result = get_token(CountingEndpoint(counter), cache)
    results.put((result.token.access_token, result.changed, result.from_cache))


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
    assert set(token for token, dummy, dummy_cached in outcomes) == {'minted-1'}
    assert sum(1 for dummy, changed, dummy_cached in outcomes if changed) == 1
    # Everyone else got the token from the cache, after the lock or before it.
    assert sum(1 for dummy, changed, from_cache in outcomes if from_cache and not changed) == workers - 1


def test_a_valid_cached_token_is_read_without_the_lock(tmp_path):
    # The fast path: fifty forks reading a good token must not queue behind a lock holder.
    server = FakeTokenServer()
    put(make_cache(tmp_path), cached_token(expires_at=time.time() + 3600, secret_check=_oauth.secret_check(SECRET)))
    holder = make_cache(tmp_path)
    holder.open_directory()
    holder.acquire()
    try:
        started = time.monotonic()
        result = get_token(endpoint(server), make_cache(tmp_path, lock_timeout=5))
        assert time.monotonic() - started < 2
        assert result.from_cache is True and result.token.access_token == 'cached-at' and not server.forms
    finally:
        holder.close()


def test_redirect_uri_goes_with_the_code(tmp_path):
    server = FakeTokenServer()
    get_token(endpoint(server), make_cache(tmp_path, principal='user:default'), grant_type='authorization_code',
              code='good-code', redirect_uri='http://127.0.0.1:8976/')
    assert server.forms[-1]['redirect_uri'] == 'http://127.0.0.1:8976/' and server.forms[-1]['code'] == 'good-code'


def test_lock_timeout_is_a_clear_error(tmp_path):
    holder = make_cache(tmp_path)
    holder.open_directory()
    holder.acquire()
    try:
        waiter = make_cache(tmp_path, lock_timeout=0.2)
        waiter.open_directory()
        with pytest.raises(CacheError, match='timed out .* waiting for the token cache lock'):
            waiter.acquire()
        waiter.close()
    finally:
        holder.close()


def test_default_cache_dir():
    assert _oauth.default_cache_dir({}) == '~/.cache/codeferry.bitbucket/tokens'
    assert _oauth.default_cache_dir({'BITBUCKET_TOKEN_CACHE_DIR': '/srv/tokens'}) == '/srv/tokens'


@pytest.mark.parametrize('field, value, accepted', [
    ('access_token', 'a' * 4096, True),
    ('access_token', 'a' * 4097, False),
    ('token_type', 'b' * 64, True),
    ('token_type', 'b' * 65, False),
    ('token_type', 'bearer\n', False),
    ('token_type', 7, False),
])
def test_token_response_field_bounds(field, value, accepted):
    payload = {'access_token': 'at', 'token_type': 'bearer', 'expires_in': 7200}
    payload[field] = value
    if accepted:
        token = Token.from_response(payload, TOKEN_URL, CLIENT_ID, 'client_credentials', NOW)
        assert getattr(token, field) == value
    else:
        with pytest.raises(ProtocolError, match='POST .*: the token response has an'):
            Token.from_response(payload, TOKEN_URL, CLIENT_ID, 'client_credentials', NOW)
