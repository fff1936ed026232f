# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import os
import shutil
import string
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote, urlsplit

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.codeferry.bitbucket.plugins.filter.urls import FilterModule, redact_url, token_url

REPO = 'https://bitbucket.org/acme/shop.git'
SECRET = 'S3cr3t+/=@:tok'
# Every printable ASCII character, repeated to beyond 2,500 characters.
LONG_TOKEN = (string.printable.strip() * 40)[:3000]

TOKENS = [
    'plain',
    'a+b/c=d',
    'p@ss:word',
    '+/=@:',
    '100%25 literal % and spaces',
    'ünïcødé-tøken',
    LONG_TOKEN,
]


def _credentials(url):
    parts = urlsplit(url)
    return unquote(parts.username), unquote(parts.password)


@pytest.mark.parametrize('token', TOKENS, ids=lambda t: t if len(t) < 40 else f'{len(t)} chars')
def test_token_round_trips(token):
    result = token_url(REPO, token)
    parts = urlsplit(result)
    assert _credentials(result) == ('x-token-auth', token)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ('https', 'bitbucket.org', None, '/acme/shop.git')
    # Nothing of the token is left unencoded that could end the userinfo early.
    assert not set(parts.password) & set('/?#@:')


def test_result_for_a_typical_token():
    assert token_url(REPO, 'a+b/c=d') == 'https://x-token-auth:a%2Bb%2Fc%3Dd@bitbucket.org/acme/shop.git'


def test_long_token_is_not_truncated():
    result = token_url(REPO, LONG_TOKEN)
    assert len(_credentials(result)[1]) == 3000


def test_username_is_encoded_too():
    result = token_url(REPO, 'tok', username='deploy@acme:ops')
    assert result == 'https://deploy%40acme%3Aops:tok@bitbucket.org/acme/shop.git'
    assert _credentials(result) == ('deploy@acme:ops', 'tok')


def test_username_is_positional_second():
    assert token_url(REPO, 'tok', 'jdoe') == 'https://jdoe:tok@bitbucket.org/acme/shop.git'


@pytest.mark.parametrize('url', [
    'https://old:secret@bitbucket.org/acme/shop.git',
    'https://olduser@bitbucket.org/acme/shop.git',
    'https://old:p@ss@bitbucket.org/acme/shop.git',
    'https://:@bitbucket.org/acme/shop.git',
])
def test_existing_userinfo_is_replaced(url):
    result = token_url(url, 'tok')
    assert result == 'https://x-token-auth:tok@bitbucket.org/acme/shop.git'


@pytest.mark.parametrize('url, expected', [
    ('https://git.example.com:8443/scm/acme/shop.git?ref=main&x=a%2Fb#frag',
     'https://x-token-auth:tok@git.example.com:8443/scm/acme/shop.git?ref=main&x=a%2Fb#frag'),
    ('https://bitbucket.org', 'https://x-token-auth:tok@bitbucket.org'),
    ('https://bitbucket.org?x=1', 'https://x-token-auth:tok@bitbucket.org?x=1'),
    ('https://bitbucket.org/acme/shop.git?', 'https://x-token-auth:tok@bitbucket.org/acme/shop.git?'),
    ('http://127.0.0.1:8080/acme/shop.git', 'http://x-token-auth:tok@127.0.0.1:8080/acme/shop.git'),
    ('HTTPS://BitBucket.org/Acme/Shop.git', 'https://x-token-auth:tok@BitBucket.org/Acme/Shop.git'),
])
def test_host_port_path_query_fragment_are_kept(url, expected):
    assert token_url(url, 'tok') == expected


@pytest.mark.parametrize('url, expected', [
    ('https://[::1]:8443/acme/shop.git', 'https://x-token-auth:tok@[::1]:8443/acme/shop.git'),
    ('https://old:pw@[2001:db8::1]/acme/shop.git', 'https://x-token-auth:tok@[2001:db8::1]/acme/shop.git'),
])
def test_ipv6_hosts_keep_their_brackets(url, expected):
    result = token_url(url, 'tok')
    assert result == expected
    assert urlsplit(result).hostname in ('::1', '2001:db8::1')


@pytest.mark.parametrize('url, token, message', [
    (None, SECRET, 'expects the URL as a string, got NoneType'),
    (42, SECRET, 'expects the URL as a string, got int'),
    (b'https://bitbucket.org/acme/shop.git', SECRET, 'expects the URL as a string, got bytes'),
    ('bitbucket.org/acme/shop.git', SECRET, 'token_url needs an https:// URL; got an SSH or scheme-less URL'),
    ('git@bitbucket.org:acme/shop.git', SECRET, 'token_url needs an https:// URL; got an SSH or scheme-less URL'),
    ('ssh://git@bitbucket.org/acme/shop.git', SECRET, 'token_url needs an https:// URL; got an SSH or scheme-less URL'),
    ('', SECRET, 'got an SSH or scheme-less URL'),
    ('ftp://bitbucket.org/acme/shop.git', SECRET, 'needs an https:// URL; got a ftp:// URL'),
    ('file:///srv/git/shop.git', SECRET, 'got a file:// URL'),
    ('https:///acme/shop.git', SECRET, 'needs a URL with a host'),
    ('https://:443/acme/shop.git', SECRET, 'needs a URL with a host'),
    ('https://bitbucket.org:99999/acme/shop.git', SECRET, 'cannot parse the host and port'),
    ('https://bitbucket.org:https/acme/shop.git', SECRET, 'cannot parse the host and port'),
    ('https://bitbucket.org:0/acme/shop.git', SECRET, 'not 0'),
    ('https://[::1/acme/shop.git', SECRET, 'cannot parse the host and port'),
    ('https://bitbucket.org/acme/shop.git\n', SECRET, 'whitespace or control characters'),
    (' https://bitbucket.org/acme/shop.git', SECRET, 'whitespace or control characters'),
    (REPO, '', 'got an empty token'),
    (REPO, None, 'expects the token as a string, got NoneType'),
    (REPO, 12345, 'expects the token as a string, got int'),
    (REPO, SECRET.encode(), 'expects the token as a string, got bytes'),
    (REPO, SECRET + '\udcff', 'cannot encode the username or token as UTF-8'),
])
def test_errors_are_clear_and_never_show_the_token(url, token, message):
    with pytest.raises(AnsibleFilterError) as excinfo:
        token_url(url, token)
    text = str(excinfo.value)
    assert message in text
    assert SECRET not in text
    assert 'S3cr3t' not in text
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize('username', ['', None, 7])
def test_bad_username_is_rejected(username):
    with pytest.raises(AnsibleFilterError, match='username as a non-empty string'):
        token_url(REPO, SECRET, username)


def test_errors_redact_a_password_already_in_the_url():
    with pytest.raises(AnsibleFilterError) as excinfo:
        token_url('ftp://deploy:OldPassw0rd@bitbucket.org/acme/shop.git', SECRET)
    text = str(excinfo.value)
    assert 'OldPassw0rd' not in text
    assert 'ftp://deploy:********@bitbucket.org/acme/shop.git' in text


@pytest.mark.parametrize('url, expected', [
    ('https://x-token-auth:a%2Bb%2Fc%3Dd@bitbucket.org/acme/shop.git', 'https://x-token-auth:********@bitbucket.org/acme/shop.git'),
    ('https://u:p@[::1]:8443/r.git?a=b@c#d', 'https://u:********@[::1]:8443/r.git?a=b@c#d'),
    ('http://u:p@ss@host/x', 'http://u:********@host/x'),
    ('https://u:@host/x', 'https://u:********@host/x'),
    ('https://:secret@host/x', 'https://:********@host/x'),
    ('HTTPS://u:p@host', 'HTTPS://u:********@host'),
    ('https://u:p@[::1/broken', 'https://u:********@[::1/broken'),
    ('ssh://git:pw@bitbucket.org/acme/shop.git', 'ssh://git:********@bitbucket.org/acme/shop.git'),
])
def test_redact_replaces_the_password(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize('url', [
    'https://bitbucket.org/acme/shop.git',
    'https://x-token-auth@bitbucket.org/acme/shop.git',
    'https://host/acme/shop@v1:x',
    'https://host/x?email=a:b@c',
    'https://host/x#u:p@h',
    'git@bitbucket.org:acme/shop.git',
    'ssh://git@bitbucket.org/acme/shop.git',
    'bitbucket.org/acme/shop.git',
    'not a url: really@not',
    '',
])
def test_redact_leaves_urls_without_password_unchanged(url):
    assert redact_url(url) == url


@pytest.mark.parametrize('token', TOKENS, ids=lambda t: t if len(t) < 40 else f'{len(t)} chars')
def test_redact_hides_every_token_url(token):
    redacted = redact_url(token_url(REPO, token))
    assert redacted == 'https://x-token-auth:********@bitbucket.org/acme/shop.git'


@pytest.mark.parametrize('value', [None, 42, b'https://u:p@host/', ['https://u:p@host/']])
def test_redact_rejects_non_strings(value):
    with pytest.raises(AnsibleFilterError, match='redact_url expects a string, got '):
        redact_url(value)


def test_filter_module_exposes_both_filters():
    assert FilterModule().filters() == {'token_url': token_url, 'redact_url': redact_url}


class _BasicAuthRecorder(BaseHTTPRequestHandler):
    """Asks for Basic auth, records the Authorization header git sends, then refuses."""

    def do_GET(self):  # pylint: disable=invalid-name
        authorization = self.headers.get('Authorization')
        if authorization is None:
            self.send_response(401)
            self.send_header('WWW-Authenticate', 'Basic realm="test"')
        else:
            self.server.authorizations.append(authorization)
            self.send_response(403)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass


@pytest.fixture
def basic_auth_server():
    server = HTTPServer(('127.0.0.1', 0), _BasicAuthRecorder)
    server.authorizations = []
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.skipif(shutil.which('git') is None, reason='git is not installed')
@pytest.mark.parametrize('token', ['tok+en/with=pad==', 'a+b/c=d@e:f%g h', LONG_TOKEN], ids=['plus-slash-equals', 'all-special', '3000-chars'])
def test_git_sends_the_token_from_the_url(basic_auth_server, tmp_path, token):
    url = token_url(f'http://127.0.0.1:{basic_auth_server.server_port}/acme/shop.git', token)
    env = {key: value for key, value in os.environ.items() if 'proxy' not in key.lower() and not key.startswith('GIT_')}
    env.update({
        'HOME': str(tmp_path),
        'GIT_CONFIG_NOSYSTEM': '1',
        'GIT_CONFIG_GLOBAL': os.devnull,
        'GIT_TERMINAL_PROMPT': '0',
        'GIT_ASKPASS': 'false',
        'NO_PROXY': '*',
    })
    result = subprocess.run(
        ['git', '-c', 'credential.helper=', 'ls-remote', url],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0  # the server refuses after it has seen the credentials
    assert token not in result.stderr
    assert basic_auth_server.authorizations, result.stderr
    scheme, dummy, encoded = basic_auth_server.authorizations[0].partition(' ')
    assert scheme == 'Basic'
    assert base64.b64decode(encoded).decode() == f'x-token-auth:{token}'
