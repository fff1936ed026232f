# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The token endpoint against Bitbucket Data Center: which flavour a URL is, client authentication by
form parameters, PKCE, rotating refresh tokens through the cache, the refused client_credentials grant
(with no request), error bodies, and Retry-After."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import (
    SECRET_OPTIONS,
    build_auth,
    request_token,
    token_argument_spec,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import TokenRequestError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import RetryPolicy
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import (
    DEFAULT_TOKEN_URL,
    TokenCache,
    TokenEndpoint,
    cache_key,
    get_token,
    token_endpoint,
)

from bitbucket_fakes import FakeHttp, NoSleep, Sequence, form_of, reply

BASE = 'https://bitbucket.example.com:8443/bitbucket'
API_URL = BASE + '/rest/api/1.0'
DC_TOKEN_URL = BASE + '/rest/oauth2/latest/token'
CLIENT_ID = 'dc-client-0123456789abcdef'
SECRET = 'dc-secret+With/Odd=Chars0123456789'
VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'
CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'  # RFC 7636 appendix B
NOW = 1795608000.0


class DataCenterTokenServer(object):
    """Data Center's OAuth 2.0 provider as its docs describe it: parameters, PKCE, rotation."""

    def __init__(self, challenge=CHALLENGE):
        self.challenge = challenge
        self.spent = set()
        self.forms = []
        self.serial = 0

    def __call__(self, method, url, headers, data):
        form = form_of(data)
        self.forms.append((headers, form))
        if form.get('client_id') != CLIENT_ID or form.get('client_secret') != SECRET:
            return reply(401, {'error': 'invalid_client', 'error_description': 'Client authentication failed'})
        grant = form.get('grant_type')
        if grant == 'authorization_code':
            verifier = form.get('code_verifier', '')
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip('=')
            if form.get('code') != 'dc-code' or (self.challenge and digest != self.challenge):
                return reply(400, {'error': 'invalid_grant', 'error_description': 'Invalid authorization code'})
        elif grant == 'refresh_token':
            if form['refresh_token'] in self.spent or not form['refresh_token'].startswith('dc-rt-'):
                return reply(400, {'error': 'invalid_grant', 'error_description': 'Refresh token is invalid'})
            self.spent.add(form['refresh_token'])
        else:
            return reply(400, {'error': 'unsupported_grant_type', 'error_description': 'Unsupported grant type'})
        self.serial += 1
        return reply(200, {'scope': 'REPO_READ', 'access_token': 'dc-at-%d' % self.serial, 'token_type': 'bearer',
                           'expires_in': 3600, 'refresh_token': 'dc-rt-%d' % self.serial})


def dc_endpoint(server, sleep=None, token_url=DC_TOKEN_URL):
    return TokenEndpoint(FakeHttp(server), token_url, CLIENT_ID, SECRET, retry=RetryPolicy(sleep=sleep or NoSleep()))


def params(tmp_path, **overrides):
    values = dict(api_url=API_URL, token_url=None, client_id=CLIENT_ID, client_secret=SECRET, cache=True,
                  cache_dir=str(tmp_path / 'tokens'), grant_type='refresh_token', refresh_token=None, code=None,
                  code_verifier=None, redirect_uri=None, cache_entry=None, min_ttl=300, force=False, timeout=30)
    values.update(overrides)
    return values


# ---------------------------------------------------------------------------------------------
# Which endpoint, which flavour


@pytest.mark.parametrize('token_url, api_url, expected', [
    (None, None, (DEFAULT_TOKEN_URL, 'cloud')),
    (None, 'https://api.bitbucket.org/2.0', (DEFAULT_TOKEN_URL, 'cloud')),
    ('', 'https://emulator.test/2.0', (DEFAULT_TOKEN_URL, 'cloud')),
    (None, API_URL, (DC_TOKEN_URL, 'datacenter')),
    (None, BASE + '/rest/api/latest/', (DC_TOKEN_URL, 'datacenter')),
    (None, 'https://git.example.com/rest/api/1.0', ('https://git.example.com/rest/oauth2/latest/token', 'datacenter')),
    (DC_TOKEN_URL, None, (DC_TOKEN_URL, 'datacenter')),
    (BASE + '/rest/oauth2/1.0/token', 'https://api.bitbucket.org/2.0', (BASE + '/rest/oauth2/1.0/token', 'datacenter')),
    (DC_TOKEN_URL + '/', None, (DC_TOKEN_URL + '/', 'datacenter')),
    # An explicit token_url is used as it is; with a Data Center api_url it is that instance's (a proxy path).
    ('https://proxy.example.com/rest/oauth2/latest/token/extra', API_URL,
     ('https://proxy.example.com/rest/oauth2/latest/token/extra', 'datacenter')),
    ('https://proxy.example.com/rest/oauth2/latest/token/extra', None,
     ('https://proxy.example.com/rest/oauth2/latest/token/extra', 'cloud')),
    (None, BASE + '/rest/api/2.0', (DEFAULT_TOKEN_URL, 'cloud')),
])
def test_token_endpoint_decides_url_and_flavour(token_url, api_url, expected):
    assert token_endpoint(token_url, api_url) == expected


def test_the_endpoint_takes_its_flavour_from_the_url():
    assert dc_endpoint(DataCenterTokenServer()).flavor == 'datacenter'
    assert dc_endpoint(DataCenterTokenServer(), token_url=DEFAULT_TOKEN_URL).flavor == 'cloud'


def test_cache_entries_of_data_center_and_cloud_are_apart():
    dc_url, dummy = token_endpoint(None, API_URL)
    assert cache_key(dc_url, CLIENT_ID, 'user:default') != cache_key(DEFAULT_TOKEN_URL, CLIENT_ID, 'user:default')


# ---------------------------------------------------------------------------------------------
# Requests


def test_client_authenticates_with_form_parameters_not_basic():
    server = DataCenterTokenServer()
    token = dc_endpoint(server).grant('refresh_token', now=NOW, refresh_token='dc-rt-0')
    assert token.access_token == 'dc-at-1' and token.refresh_token == 'dc-rt-1'
    assert token.scopes == ['REPO_READ'] and token.expires_at == NOW + 3600
    headers, form = server.forms[0]
    assert 'Authorization' not in headers
    assert headers['Content-Type'] == 'application/x-www-form-urlencoded'
    assert form == {'grant_type': 'refresh_token', 'refresh_token': 'dc-rt-0', 'client_id': CLIENT_ID,
                    'client_secret': SECRET}


def test_cloud_requests_are_unchanged():
    seen = []
    handler = Sequence(reply(200, {'access_token': 'a', 'expires_in': 7200, 'scopes': 'repository'}))
    ep = TokenEndpoint(FakeHttp(lambda *call: seen.append(call) or handler(*call)), DEFAULT_TOKEN_URL, CLIENT_ID, SECRET)
    ep.grant('authorization_code', code='c', redirect_uri=None, code_verifier=None)
    method, url, headers, data = seen[0]
    assert data == 'grant_type=authorization_code&code=c'
    assert base64.b64decode(headers['Authorization'][6:]).decode() == '%s:%s' % (CLIENT_ID, SECRET)


def test_pkce_code_verifier_is_sent_with_the_code(tmp_path):
    server = DataCenterTokenServer()
    cache = TokenCache(str(tmp_path / 'tokens'), DC_TOKEN_URL, CLIENT_ID, 'user:default')
    result = get_token(dc_endpoint(server), cache, grant_type='authorization_code', code='dc-code',
                       redirect_uri='http://127.0.0.1:8977/callback', code_verifier=VERIFIER, now=NOW)
    assert result.changed and result.token.refresh_token == 'dc-rt-1'
    dummy, form = server.forms[0]
    assert form['code_verifier'] == VERIFIER and form['redirect_uri'] == 'http://127.0.0.1:8977/callback'
    assert form['grant_type'] == 'authorization_code' and form['code'] == 'dc-code'


@pytest.mark.parametrize('verifier', [None, ''])
def test_no_code_verifier_field_without_one(verifier):
    server = DataCenterTokenServer(challenge=None)
    get_token(dc_endpoint(server), None, grant_type='authorization_code', code='dc-code', code_verifier=verifier, now=NOW)
    assert 'code_verifier' not in server.forms[0][1]


def test_a_wrong_verifier_says_what_to_check_and_quotes_no_secret():
    wrong = 'W' * 43
    with pytest.raises(TokenRequestError) as info:
        get_token(dc_endpoint(DataCenterTokenServer()), None, grant_type='authorization_code', code='dc-code',
                  code_verifier=wrong, now=NOW)
    message = str(info.value)
    assert 'HTTP 400: invalid_grant: Invalid authorization code' in message
    assert 'send the code_verifier of the authorization' in message
    assert wrong not in message and SECRET not in message and 'dc-code' not in message


@pytest.mark.parametrize('verifier, reason', [
    ('short', '5 characters'),
    ('v' * 129, '129 characters'),
    ('secret+verifier/with=chars-0123456789abcdefghij', 'a character outside that set'),
])
def test_a_malformed_verifier_is_refused_before_any_request(verifier, reason):
    server = DataCenterTokenServer()
    with pytest.raises(ValidationError) as info:
        get_token(dc_endpoint(server), None, grant_type='authorization_code', code='dc-code', code_verifier=verifier)
    assert reason in str(info.value) and 'RFC 7636' in str(info.value) and verifier not in str(info.value)
    assert server.forms == []


def test_a_verifier_goes_only_with_a_code():
    server = DataCenterTokenServer()
    with pytest.raises(ValidationError, match='code_verifier goes with grant_type=authorization_code'):
        get_token(dc_endpoint(server), None, grant_type='refresh_token', refresh_token='dc-rt-0', code_verifier=VERIFIER)
    assert server.forms == []


# ---------------------------------------------------------------------------------------------
# Refresh with rotation through the locked cache


def test_refresh_rotates_through_the_cache(tmp_path):
    server = DataCenterTokenServer()
    http = FakeHttp(server)
    first = request_token(params(tmp_path, grant_type='authorization_code', code='dc-code', code_verifier=VERIFIER),
                          http, {'client_id': CLIENT_ID, 'client_secret': SECRET})
    assert first.changed and first.token.token_url == DC_TOKEN_URL
    # Reused from the cache: no request.
    again = request_token(params(tmp_path), http, {'client_id': CLIENT_ID, 'client_secret': SECRET})
    assert again.from_cache and again.token.access_token == 'dc-at-1' and len(http.calls) == 1
    # Renewed with the cached refresh token, whose successor is saved: the spent one is never sent again.
    renewed = request_token(params(tmp_path, min_ttl=3600), http, {'client_id': CLIENT_ID, 'client_secret': SECRET})
    assert renewed.changed and renewed.token.refresh_token == 'dc-rt-2'
    assert server.forms[1][1]['refresh_token'] == 'dc-rt-1'
    third = request_token(params(tmp_path, min_ttl=3600), http, {'client_id': CLIENT_ID, 'client_secret': SECRET})
    assert server.forms[2][1]['refresh_token'] == 'dc-rt-2' and third.token.refresh_token == 'dc-rt-3'
    assert all('Authorization' not in headers for headers, dummy in server.forms)
    cache = TokenCache(str(tmp_path / 'tokens'), DC_TOKEN_URL, CLIENT_ID, 'user:default')
    cache.open_directory(create=False)
    try:
        assert cache.read(warn=False).refresh_token == 'dc-rt-3'
    finally:
        cache.close()


def test_a_spent_refresh_token_says_to_authorize_again(tmp_path):
    server = DataCenterTokenServer()
    server.spent.add('dc-rt-7')
    with pytest.raises(TokenRequestError) as info:
        request_token(params(tmp_path, cache=False, refresh_token='dc-rt-7'), FakeHttp(server),
                      {'client_id': CLIENT_ID, 'client_secret': SECRET})
    assert 'invalid_grant: Refresh token is invalid' in str(info.value) and 'dc-rt-7' not in str(info.value)


# ---------------------------------------------------------------------------------------------
# client_credentials: refused before any request


def _assert_refusal(message):
    assert 'Bitbucket Data Center has no client_credentials grant' in message
    assert 'no token was requested from %s' % DC_TOKEN_URL in message
    assert 'HTTP access token' in message and 'access_token or in BITBUCKET_ACCESS_TOKEN' in message
    assert 'codeferry.bitbucket.authorize playbook' in message and 'grant_type refresh_token' in message
    assert SECRET not in message


def test_client_credentials_is_refused_by_the_module_and_lookup_path(tmp_path):
    http = FakeHttp(DataCenterTokenServer())
    with pytest.raises(ValidationError) as info:
        request_token(params(tmp_path, grant_type='client_credentials'), http, {'client_id': CLIENT_ID, 'client_secret': SECRET})
    _assert_refusal(str(info.value))
    assert http.calls == [] and not (tmp_path / 'tokens').exists()


def test_client_credentials_is_refused_by_the_endpoint_itself():
    server = DataCenterTokenServer()
    with pytest.raises(ValidationError) as info:
        dc_endpoint(server).grant('client_credentials')
    _assert_refusal(str(info.value))
    assert server.forms == []


@pytest.mark.parametrize('overrides', [{'api_url': API_URL}, {'api_url': 'https://api.bitbucket.org/2.0', 'token_url': DC_TOKEN_URL}])
def test_api_modules_refuse_client_id_and_secret_on_data_center(tmp_path, overrides):
    http = FakeHttp(DataCenterTokenServer())
    with pytest.raises(ValidationError) as info:
        build_auth(dict({'client_id': CLIENT_ID, 'client_secret': SECRET, 'cache_dir': str(tmp_path), 'timeout': 30},
                        **overrides), http, environ={})
    _assert_refusal(str(info.value))
    assert http.calls == []


def test_the_environment_client_credentials_are_refused_too(tmp_path):
    http = FakeHttp(DataCenterTokenServer())
    with pytest.raises(ValidationError, match='no client_credentials grant'):
        build_auth({'api_url': API_URL, 'timeout': 30}, http,
                   environ={'BITBUCKET_CLIENT_ID': CLIENT_ID, 'BITBUCKET_CLIENT_SECRET': SECRET})
    assert http.calls == []


def test_an_unrecognised_data_center_answer_still_gives_the_advice():
    # A Data Center behind a token URL that token_endpoint() does not recognise answers the grant itself.
    ep = TokenEndpoint(FakeHttp(Sequence(reply(400, {'error': 'unsupported_grant_type', 'error_description': 'Unsupported grant'}))),
                       'https://sso.example.com/oauth/token', CLIENT_ID, SECRET)
    with pytest.raises(TokenRequestError) as info:
        ep.grant('client_credentials')
    assert 'unsupported_grant_type: Unsupported grant' in str(info.value)
    assert 'if this is Bitbucket Data Center, it has no client_credentials grant' in str(info.value)


# ---------------------------------------------------------------------------------------------
# Errors and retries


def test_bad_client_secret_message():
    ep = TokenEndpoint(FakeHttp(DataCenterTokenServer()), DC_TOKEN_URL, CLIENT_ID, 'wrong-secret-0123')
    with pytest.raises(TokenRequestError) as info:
        ep.grant('refresh_token', refresh_token='dc-rt-0')
    assert str(info.value) == ('POST %s (grant_type=refresh_token): HTTP 401: invalid_client: Client authentication '
                               'failed; check client_id and client_secret' % DC_TOKEN_URL)


def test_the_errors_envelope_is_quoted_with_secrets_redacted():
    echo = {'errors': [{'context': None, 'message': 'Bad request: client_secret=%s code_verifier=%s' % (SECRET, VERIFIER),
                        'exceptionName': 'com.atlassian.oauth2.provider.api.InvalidRequestException'}]}
    ep = dc_endpoint(Sequence(reply(400, echo)))
    with pytest.raises(TokenRequestError) as info:
        get_token(ep, None, grant_type='authorization_code', code='dc-code', code_verifier=VERIFIER)
    message = str(info.value)
    assert 'HTTP 400: Bad request: client_secret=******** code_verifier=********' in message
    assert SECRET not in message and VERIFIER not in message


def test_an_echoed_form_body_is_redacted():
    body = {'error': 'invalid_request', 'error_description': 'you sent client_secret=dc-secret%2BWith%2FOdd%3DChars0123456789'}
    with pytest.raises(TokenRequestError) as info:
        dc_endpoint(Sequence(reply(400, body))).grant('refresh_token', refresh_token='dc-rt-0')
    assert 'client_secret=********' in str(info.value) and 'Chars0123456789' not in str(info.value)


def test_a_429_with_retry_after_is_waited_for():
    sleep = NoSleep()
    server = DataCenterTokenServer()
    answers = Sequence(reply(429, {'errors': [{'message': 'Rate limit exceeded'}]}, headers={'retry-after': '7'}))
    calls = []

    def handler(*call):
        calls.append(1)
        return answers(*call) if len(calls) == 1 else server(*call)
    token = dc_endpoint(handler, sleep=sleep).grant('refresh_token', refresh_token='dc-rt-0')
    assert token.access_token == 'dc-at-1' and sleep.delays == [7.0]


def test_a_429_that_outlasts_the_retries_says_so():
    sleep = NoSleep()
    ep = dc_endpoint(Sequence(reply(429, {'errors': [{'message': 'Rate limit exceeded'}]}, headers={'retry-after': '3600'})),
                     sleep=sleep)
    with pytest.raises(TokenRequestError) as info:
        ep.grant('refresh_token', refresh_token='dc-rt-0')
    assert sleep.delays == [60.0] * 5
    assert 'HTTP 429: Rate limit exceeded (gave up after 5 retries; the server asked to wait 3600 s' in str(info.value)


# ---------------------------------------------------------------------------------------------
# Options


def test_code_verifier_is_a_secret_option():
    spec = token_argument_spec()
    assert spec['code_verifier'] == {'type': 'str', 'no_log': True}
    assert 'code_verifier' in SECRET_OPTIONS
    assert spec['token_url'].get('default') is None


# Review findings: proxy token paths, the option a bad derived URL names, and environment precedence.

DC_API = 'https://git.example.com/bitbucket/rest/api/1.0'


def test_a_token_url_behind_a_proxy_path_is_data_center_when_api_url_is():
    assert token_endpoint('https://sso.example.com/oauth/token', DC_API) == ('https://sso.example.com/oauth/token',
                                                                             'datacenter')
    assert token_endpoint('https://sso.example.com/oauth/token', None)[1] == 'cloud'


def test_a_bad_data_center_api_url_is_named_as_api_url_not_token_url():
    with pytest.raises(ValidationError, match='^api_url must be an https:// URL'):
        token_endpoint(None, 'http://git.example.com/rest/api/1.0')


def test_on_data_center_consumer_credentials_in_the_environment_do_not_hide_a_personal_token():
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import resolve_credentials
    env = {'BITBUCKET_CLIENT_ID': 'id', 'BITBUCKET_CLIENT_SECRET': 's',
           'BITBUCKET_USERNAME': 'alice', 'BITBUCKET_PASSWORD': 'personal'}
    assert resolve_credentials({'api_url': DC_API}, env)[0] == 'basic'
    # On Cloud the documented order stays: client credentials before username/password.
    assert resolve_credentials({'api_url': 'https://api.bitbucket.org/2.0'}, env)[0] == 'client_credentials'
    # Alone, they are still chosen, so that the refusal says what to use instead.
    only = {'BITBUCKET_CLIENT_ID': 'id', 'BITBUCKET_CLIENT_SECRET': 's'}
    assert resolve_credentials({'api_url': DC_API}, only)[0] == 'client_credentials'
