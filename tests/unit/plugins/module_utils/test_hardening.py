# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Hostile servers and careless input: secrets stay out of messages, odd input gives one clear error."""

from __future__ import annotations

import base64
import os
import stat

from urllib.parse import quote, quote_plus

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    AuthenticationError,
    CacheError,
    ProtocolError,
    TokenRequestError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import PluginHttp, RetryPolicy, validate_timeout, validate_url
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import TokenCache, TokenEndpoint
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import ref_summary, repository_summary

from bitbucket_fakes import FakeHttp, NoSleep, Sequence, reply

TOKEN_URL = 'https://bitbucket.example/site/oauth2/access_token'
API = 'https://api.example/2.0'
CLIENT_ID = 'demoKey1234567890ab'
SECRET = 'demoSecret+With/Odd=Chars0123456789'
BASIC = base64.b64encode(('%s:%s' % (CLIENT_ID, SECRET)).encode()).decode()


def endpoint(*answers):
    return TokenEndpoint(FakeHttp(Sequence(*answers)), TOKEN_URL, CLIENT_ID, SECRET, retry=RetryPolicy(sleep=NoSleep()))


def secret_forms(value):
    return [value, quote(value, safe=''), quote_plus(value)]


# --- secrets in what the server sends back ---------------------------------------------------


def test_non_json_token_response_does_not_echo_the_body():
    # A token endpoint answering in form encoding (as some OAuth servers do) puts the new token in the body.
    ep = endpoint(reply(200, 'access_token=FreshSecretToken123&token_type=bearer', content_type='application/x-www-form-urlencoded'))
    with pytest.raises(ProtocolError, match='not JSON') as info:
        ep.grant('client_credentials')
    assert 'FreshSecretToken123' not in str(info.value)
    assert 'application/x-www-form-urlencoded' in str(info.value)


@pytest.mark.parametrize('echo', [BASIC, 'Basic ' + BASIC] + secret_forms(SECRET))
def test_token_endpoint_error_echoing_the_credentials_is_redacted(echo):
    ep = endpoint(reply(400, 'bad request; you sent %s' % echo, content_type='text/plain'))
    with pytest.raises(TokenRequestError) as info:
        ep.grant('client_credentials')
    message = str(info.value)
    assert 'bad request' in message
    for form in secret_forms(SECRET) + [BASIC]:
        assert form not in message


@pytest.mark.parametrize('field', ['refresh_token', 'code'])
def test_token_endpoint_error_echoing_a_grant_field_is_redacted(field):
    value = 'grant+field/value=%s' % field
    ep = endpoint(reply(400, {'error': 'invalid_grant', 'error_description': 'unknown %s %s' % (field, quote_plus(value))}))
    with pytest.raises(TokenRequestError) as info:
        ep.grant('refresh_token' if field == 'refresh_token' else 'authorization_code', **{field: value})
    for form in secret_forms(value):
        assert form not in str(info.value)
    assert 'unknown %s' % field in str(info.value)


def test_api_error_echoing_the_token_is_redacted():
    token = 'api+token/with=odd'
    http = FakeHttp(Sequence(reply(401, {'error': {'message': 'bad token %s (%s)' % (token, quote(token, safe=''))}})))
    api = BitbucketClient(http, API, AccessTokenAuth(token), retry=RetryPolicy(sleep=NoSleep()))
    with pytest.raises(AuthenticationError) as info:
        api.get('user')
    assert 'bad token' in str(info.value)
    for form in secret_forms(token):
        assert form not in str(info.value)


@pytest.mark.parametrize('token', ['abc\ndef', 'abc\r\nX-Injected: 1', 'tab\there', 'nul\x00byte'])
def test_access_token_with_control_characters_is_refused_without_showing_it(token):
    with pytest.raises(ValidationError, match='access_token') as info:
        AccessTokenAuth(token)
    assert token not in str(info.value) and repr(token) not in str(info.value)


def test_issued_token_with_control_characters_is_a_protocol_error():
    ep = endpoint(reply(200, {'access_token': 'new\ntoken', 'expires_in': 7200}))
    with pytest.raises(ProtocolError, match='access_token') as info:
        ep.grant('client_credentials')
    assert 'new\ntoken' not in str(info.value) and 'new\\ntoken' not in str(info.value)


# --- odd shapes from the server ---------------------------------------------------------------


@pytest.mark.parametrize('value', [1, 'x', None, ['a']])
def test_summaries_of_non_objects_are_protocol_errors(value):
    with pytest.raises(ProtocolError):
        repository_summary(value)
    with pytest.raises(ProtocolError):
        ref_summary(value)


def test_summaries_tolerate_odd_nested_shapes():
    repo = repository_summary({'slug': 'api', 'links': ['x'], 'workspace': 'w', 'project': [], 'mainbranch': 'main'})
    assert repo['slug'] == 'api' and repo['clone_url'] is None and repo['mainbranch'] is None
    repo = repository_summary({'slug': 'api', 'links': {'clone': 'x', 'html': 'y'}})
    assert repo['clone_url'] is None and repo['html_url'] is None
    assert ref_summary({'name': 'main', 'target': 'abc'})['commit'] is None


@pytest.mark.parametrize('next_link', [5, ['x'], {'a': 1}])
def test_non_string_next_link_is_a_protocol_error(next_link):
    http = FakeHttp(Sequence(reply(200, {'values': [], 'next': next_link})))
    api = BitbucketClient(http, API, AccessTokenAuth('tok'), retry=RetryPolicy(sleep=NoSleep()))
    with pytest.raises(ProtocolError, match='next'):
        api.paginate('repositories', 'acme')


# --- careless input ---------------------------------------------------------------------------


@pytest.mark.parametrize('value', [10 ** 20, 86401, float('inf'), float('nan')])
def test_timeout_has_an_upper_bound(value):
    with pytest.raises(ValidationError, match='timeout'):
        validate_timeout(value)


def test_url_with_port_zero_is_refused():
    with pytest.raises(ValidationError, match='port'):
        validate_url('api_url', 'https://127.0.0.1:0/2.0')


def test_missing_ca_path(tmp_path):
    with pytest.raises(ValidationError, match='ca_path .* does not exist'):
        PluginHttp(ca_path=str(tmp_path / 'missing.pem'))


def test_ca_path_that_is_a_directory(tmp_path):
    with pytest.raises(ValidationError, match='ca_path .* is a directory'):
        PluginHttp(ca_path=str(tmp_path))


def test_ca_path_without_certificates(tmp_path):
    path = tmp_path / 'not-a-ca.pem'
    path.write_text('hello\n')
    with pytest.raises(ValidationError, match='ca_path .* no PEM certificate'):
        PluginHttp(ca_path=str(path))


def test_ca_path_is_not_checked_without_certificate_validation(tmp_path):
    PluginHttp(validate_certs=False, ca_path=str(tmp_path / 'missing.pem'))


@pytest.mark.parametrize('timeout', [0, -1, 10 ** 12])
def test_both_http_backends_check_the_timeout(timeout):
    # One check in the HTTP layer covers the modules and the lookup.
    with pytest.raises(ValidationError, match='timeout'):
        PluginHttp(timeout=timeout)


def test_shared_world_writable_directory_is_refused_and_left_alone(tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    with pytest.raises(CacheError, match='writable by other users'):
        TokenCache(str(shared), TOKEN_URL, CLIENT_ID).open_directory()
    assert stat.S_IMODE(os.stat(str(shared)).st_mode) == 0o1777, 'a shared directory must never be chmod-ed'
    assert os.listdir(str(shared)) == []


def test_group_writable_directory_is_refused_and_left_alone(tmp_path):
    shared = tmp_path / 'team'
    shared.mkdir()
    os.chmod(str(shared), 0o770)
    with pytest.raises(CacheError, match='writable by other users'):
        TokenCache(str(shared), TOKEN_URL, CLIENT_ID).open_directory()
    assert stat.S_IMODE(os.stat(str(shared)).st_mode) == 0o770
