# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Error envelopes, status mapping, safe URLs and input validation."""

from __future__ import annotations

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import error_message, raise_for_status, validate_slug
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import _classify, safe_url, validate_timeout, validate_url
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import validate_min_ttl

from bitbucket_fakes import reply

NOT_FOUND = {'type': 'error', 'error': {'message': 'The requested repository either does not exist or you do not have access.'}}


def test_error_envelope_message():
    status, headers, body = reply(404, NOT_FOUND)
    assert error_message(status, headers, body) == NOT_FOUND['error']['message']


def test_error_envelope_detail_and_fields():
    body = {'type': 'error', 'error': {'message': 'Bad request', 'detail': 'Invalid field', 'fields': {'src': ['This field is required.']}}}
    assert error_message(*reply(400, body)) == 'Bad request (Invalid field) [src: This field is required.]'


def test_text_plain_rate_limit_body():
    status, headers, body = reply(429, 'Rate limit for this resource has been exceeded', content_type='text/plain')
    assert error_message(status, headers, body) == 'Rate limit for this resource has been exceeded'


def test_html_body_is_not_dumped():
    status, headers, body = reply(400, '<html><body>OpenID transaction in progress</body></html>', content_type='text/html')
    assert error_message(status, headers, body) == 'unexpected HTML response (text/html)'


def test_oauth_style_and_data_center_bodies():
    assert error_message(*reply(400, {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'})) == \
        'invalid_request: Invalid refresh_token'
    assert error_message(*reply(404, {'errors': [{'message': 'Repository SOUR/x does not exist.'}]})) == 'Repository SOUR/x does not exist.'


def test_empty_and_long_bodies():
    assert error_message(*reply(502, b'')) == 'no response body'
    message = error_message(*reply(500, 'x' * 1000, content_type='text/plain'))
    assert len(message) == 300 and message.endswith('...')


@pytest.mark.parametrize('status, cls', [(401, AuthenticationError), (403, AuthenticationError), (404, NotFoundError),
                                         (429, RateLimitedError), (400, ApiError), (500, ApiError)])
def test_status_to_error_class(status, cls):
    with pytest.raises(cls) as info:
        raise_for_status('GET', 'https://api.example/2.0/x', *reply(status, NOT_FOUND))
    assert info.value.status == status
    assert info.value.__class__ is cls


def test_message_names_request_and_server_message():
    url = 'https://api.bitbucket.org/2.0/repositories/acme/nope'
    with pytest.raises(NotFoundError) as info:
        raise_for_status('GET', url, *reply(404, NOT_FOUND))
    assert str(info.value) == 'GET %s: HTTP 404: %s' % (url, NOT_FOUND['error']['message'])


def test_gave_up_suffix():
    answer = reply(429, 'Rate limit for this resource has been exceeded', content_type='text/plain')
    with pytest.raises(RateLimitedError, match=r'HTTP 429: Rate limit .* \(gave up after 5 retries\)$'):
        raise_for_status('GET', 'https://api.example/2.0/x', *answer, retries=5)


def test_success_does_not_raise():
    raise_for_status('GET', 'https://api.example/2.0/x', *reply(200, {}))


def test_safe_url_removes_userinfo_and_secret_query_values():
    url = 'https://user:hunter2@api.example/2.0/x?page=2&access_token=SECRET&q=name%20~%20%22a%22&client_secret=S2'
    shown = safe_url(url)
    assert 'hunter2' not in shown and 'user' not in shown
    assert 'SECRET' not in shown and 'S2' not in shown
    assert shown.startswith('https://api.example/2.0/x?page=2&access_token=********')
    assert 'q=name ~ "a"' in shown


@pytest.mark.parametrize('url', ['https:/x-token-auth:hunter2@127.0.0.1:8443', 'https:x-token-auth:hunter2@host/x.git'])
def test_safe_url_removes_userinfo_from_urls_too_malformed_to_have_a_host(url):
    assert 'hunter2' not in safe_url(url)


def test_safe_url_leaves_plain_urls_alone():
    url = 'https://api.bitbucket.org/2.0/repositories/acme/api'
    assert safe_url(url) == url


@pytest.mark.parametrize('value', ['bitbucket.org/site/oauth2/access_token', 'ftp://host/x', 'https://', '', None, 42,
                                   'https:///path', 'http://host:99999/'])
def test_validate_url_rejects(value):
    with pytest.raises(ValidationError, match='^token_url must be an absolute https:// URL'):
        validate_url('token_url', value)


def test_validate_url_message_shows_the_value():
    with pytest.raises(ValidationError) as info:
        validate_url('token_url', 'bitbucket.org/site/oauth2/access_token')
    assert str(info.value) == "token_url must be an absolute https:// URL, got 'bitbucket.org/site/oauth2/access_token'"


def test_validate_url_refuses_credentials_without_echoing_them():
    with pytest.raises(ValidationError) as info:
        validate_url('api_url', 'https://me:hunter2@api.example/2.0')
    assert 'hunter2' not in str(info.value) and 'credentials' in str(info.value)


@pytest.mark.parametrize('value', ['https://api.bitbucket.org/2.0', 'http://127.0.0.1:8443/2.0/', 'https://[::1]:9/x'])
def test_validate_url_accepts(value):
    assert validate_url('api_url', value) == value


@pytest.mark.parametrize('value', ['acme', 'my-team_1.x', '{7708d810-964c-403f-8c3b-2b7e44c4b6e5}'])
def test_validate_slug_accepts(value):
    assert validate_slug('workspace', value) == value


@pytest.mark.parametrize('value', ['', None, 'acme/api', 'a b', '{not-a-uuid}', '../x', 'acme?'])
def test_validate_slug_rejects(value):
    with pytest.raises(ValidationError, match='^workspace must be'):
        validate_slug('workspace', value)


@pytest.mark.parametrize('value', [-1, 86400, 10 ** 6, True, '300', None])
def test_min_ttl_rejects(value):
    with pytest.raises(ValidationError, match='^min_ttl must be'):
        validate_min_ttl(value)


@pytest.mark.parametrize('value', [0, 300, 7199, 7200, 86399])
def test_min_ttl_accepts(value):
    assert validate_min_ttl(value) == value


@pytest.mark.parametrize('value', [0, -3, None, True])
def test_timeout_rejects(value):
    with pytest.raises(ValidationError, match='timeout'):
        validate_timeout(value)


@pytest.mark.parametrize('text, kind', [
    ('Request failed: <urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer '
     'certificate (_ssl.c:1006)>', 'tls'),
    ('Request failed: <urlopen error [Errno 111] Connection refused>', 'refused'),
    ('Connection failure: timed out', 'timeout'),
    ('Connection failure: Remote end closed connection without response', 'dropped'),
    ('Connection failure: [Errno 104] Connection reset by peer', 'dropped'),
    ('Request failed: <urlopen error [Errno -2] Name or service not known>', 'dns'),
    ('something else entirely', 'other'),
])
def test_classify_fetch_url_messages(text, kind):
    assert _classify(text)[0] == kind


def test_certificate_message_says_what_to_do():
    kind, text = _classify('Request failed: <urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: '
                           'self-signed certificate in certificate chain (_ssl.c:1006)>')
    assert text.startswith('certificate verify failed (self-signed certificate in certificate chain')
    assert 'ca_path' in text and 'validate_certs' in text
