# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Both HTTP backends against real local sockets: statuses, bodies, typed connection failures,
redirects that are never followed, scheme mix-ups, and what a hostile server sends back.

The module backend runs inside a real AnsibleModule, since fetch_url() reads its settings there.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import ssl
import threading

import pytest

from ansible.module_utils import basic

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient, error_message
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import RedirectError, TransportError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import (
    INSECURE_WARNING,
    REDACTED,
    ModuleHttp,
    PluginHttp,
    RetryPolicy,
    decode_body,
    quote_server_text,
    redact,
    request_secrets,
    strip_userinfo,
    validate_url,
)

from bitbucket_fakes import NoSleep

trustme = pytest.importorskip('trustme')

from hostile_server import HostileServer, encode  # noqa: E402  pylint: disable=wrong-import-position

CLIENT_ID = 'demoKey1234567890ab'
SECRET = 'demoSecret+With/Odd=Chars0123456789'
BASIC = base64.b64encode(('%s:%s' % (CLIENT_ID, SECRET)).encode()).decode()
TOKEN = 'ATCTT3xFfGN0acme+workspace/token='
ENCODINGS = ['utf-8', 'utf-8-sig', 'utf-16', 'utf-16-le', 'utf-16-be', 'utf-16-be-bom', 'utf-32', 'utf-32-le', 'utf-32-be',
             'utf-32-be-bom']


def real_module(monkeypatch, tmp_path, validate_certs=True):
    """An AnsibleModule built the way a module process builds one, from serialized arguments."""
    args = {'validate_certs': validate_certs, '_ansible_remote_tmp': str(tmp_path), '_ansible_keep_remote_files': False}
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())
    monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy', raising=False)  # ansible-core 2.19 and later
    return basic.AnsibleModule(argument_spec={'validate_certs': {'type': 'bool', 'default': True}})


@pytest.fixture(params=['plugin', 'module'])
def make_http(request, monkeypatch, tmp_path):
    def factory(validate_certs=True, ca_path=None, timeout=5):
        if request.param == 'plugin':
            return PluginHttp(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
        module = real_module(monkeypatch, tmp_path, validate_certs)
        return ModuleHttp(module, validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
    return factory


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        if self.path.startswith('/missing'):
            payload, status = b'{"type": "error", "error": {"message": "nope"}}', 404
        else:
            payload, status = b'{"method": "%s", "body": "%s", "auth": "%s"}' % (
                self.command.encode(), body, (self.headers.get('Authorization') or '').encode()), 200
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Retry-After', '7')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture(scope='module')
def ca():
    return trustme.CA()


@pytest.fixture(scope='module')
def server(ca, tmp_path_factory):
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert('127.0.0.1').configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    ca_file = str(tmp_path_factory.mktemp('ca') / 'ca.pem')
    ca.cert_pem.write_to_path(ca_file)
    yield 'https://127.0.0.1:%d' % httpd.server_address[1], ca_file
    httpd.shutdown()


def test_success_with_ca_path(make_http, server):
    base, ca_file = server
    status, headers, body = make_http(ca_path=ca_file).request('POST', base + '/x', headers={'Authorization': 'Bearer t'},
                                                               data='a=1')
    assert status == 200 and headers['content-type'] == 'application/json' and headers['retry-after'] == '7'
    assert body == b'{"method": "POST", "body": "a=1", "auth": "Bearer t"}'


def test_error_status_comes_back_with_its_body(make_http, server):
    base, ca_file = server
    status, headers, body = make_http(ca_path=ca_file).request('GET', base + '/missing')
    assert status == 404 and b'"nope"' in body and headers['content-type'] == 'application/json'


def test_unknown_ca_is_a_clear_tls_error(make_http, server):
    base, dummy = server
    with pytest.raises(TransportError) as info:
        make_http().request('GET', base + '/x?access_token=SECRET')
    assert info.value.kind == 'tls'
    message = str(info.value)
    assert message.startswith('GET %s/x?access_token=********: certificate verify failed' % base)
    assert 'set ca_path' in message and 'SECRET' not in message


def test_validate_certs_false(make_http, server):
    base, dummy = server
    assert make_http(validate_certs=False).request('GET', base + '/x')[0] == 200


def test_connection_refused(make_http):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError) as info:
        make_http().request('POST', 'https://127.0.0.1:%d/site/oauth2/access_token' % port)
    assert info.value.kind == 'refused' and not info.value.retryable
    assert str(info.value) == 'POST https://127.0.0.1:%d/site/oauth2/access_token: connection refused' % port


def _raw_server(behaviour):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(5)

    def serve():
        while True:
            try:
                conn, dummy = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            behaviour(conn)
    threading.Thread(target=serve, daemon=True).start()
    return listener, 'http://127.0.0.1:%d' % listener.getsockname()[1]


def test_dropped_connection_is_retryable(make_http):
    listener, base = _raw_server(lambda conn: conn.close())
    try:
        with pytest.raises(TransportError) as info:
            make_http().request('GET', base + '/x')
    finally:
        listener.close()
    assert info.value.kind == 'dropped' and info.value.retryable


def test_timeout_names_the_setting(make_http):
    held = []
    listener, base = _raw_server(held.append)
    try:
        with pytest.raises(TransportError) as info:
            make_http(timeout=1).request('GET', base + '/x')
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert info.value.kind == 'timeout'
    assert str(info.value) == 'GET %s/x: timed out after 1 seconds (raise timeout if the server is slow)' % base


# --- a hostile server -----------------------------------------------------------------------


@pytest.fixture
def plain():
    with HostileServer(tls=False) as server:
        yield server


@pytest.mark.parametrize('code', [301, 302, 303, 307, 308])
@pytest.mark.parametrize('target', ['https', 'http'])
def test_a_redirect_is_never_followed_and_names_its_target(code, target, make_http, evil, elsewhere, plain_elsewhere):
    other = elsewhere if target == 'https' else plain_elsewhere
    evil.redirect_to = other.url + '/site/oauth2/access_token?code=AuthCode123&next=1'
    url = evil.url + '/redirect/%d/site/oauth2/access_token' % code
    before = len(evil.requests)
    with pytest.raises(RedirectError) as info:
        make_http(ca_path=evil.ca_file).request('POST', url, headers={'Authorization': 'Basic ' + BASIC},
                                                data='grant_type=client_credentials')
    assert str(info.value) == (
        'POST %s: HTTP %d: refusing to follow a redirect to %s/site/oauth2/access_token?code=********&next=1; the Bitbucket '
        'token endpoint and REST API do not redirect, so check token_url and api_url' % (url, code, other.url))
    assert info.value.status == code
    assert len(evil.requests) == before + 1
    assert other.connections == 0 and other.requests == []


def test_a_redirect_of_the_api_with_a_bearer_token_goes_nowhere(make_http, evil, elsewhere):
    evil.redirect_to = elsewhere.url + '/2.0/user'
    with pytest.raises(RedirectError, match='^GET .*: HTTP 302: refusing to follow a redirect to %s/2.0/user;' % elsewhere.url):
        make_http(ca_path=evil.ca_file).request('GET', evil.url + '/redirect/302/2.0/user', headers={'Authorization': 'Bearer ' + TOKEN})
    assert elsewhere.connections == 0


def test_a_relative_redirect_is_shown_resolved_and_not_followed(make_http, evil):
    evil.redirect_to = None
    before = len(evil.requests)
    with pytest.raises(RedirectError, match='refusing to follow a redirect to %s/landed;' % evil.url):
        make_http(ca_path=evil.ca_file).request('GET', evil.url + '/redirect/307/2.0/user')
    assert [request['path'] for request in evil.requests[before:]] == ['/redirect/307/2.0/user']


def test_a_location_that_echoes_the_credentials_is_redacted(make_http, evil, elsewhere):
    evil.redirect_to = '%s/x?leak=%s&basic=%s' % (elsewhere.url, SECRET, BASIC)
    with pytest.raises(RedirectError) as info:
        make_http(ca_path=evil.ca_file).request('POST', evil.url + '/redirect/302/t', headers={'Authorization': 'Basic ' + BASIC})
    assert SECRET not in str(info.value) and BASIC not in str(info.value)
    assert 'leak=%s&basic=%s' % (REDACTED, REDACTED) in str(info.value)


def test_https_to_a_plain_http_port_fails_at_once_naming_the_scheme(make_http, plain):
    url = plain.url.replace('http://', 'https://') + '/2.0/user'
    with pytest.raises(TransportError) as info:
        make_http().request('GET', url)
    assert info.value.kind == 'scheme' and not info.value.retryable
    assert str(info.value) == ("GET %s: the server at 127.0.0.1:%d does not speak HTTPS (it answered in plain HTTP); "
                               "check the URL's scheme and port" % (url, plain.port))


def test_plain_http_to_a_tls_port_fails_at_once_naming_the_scheme(make_http, evil):
    sleep = NoSleep()
    api_url = evil.url.replace('https://', 'http://') + '/2.0'
    client = BitbucketClient(make_http(), api_url, AccessTokenAuth(TOKEN), retry=RetryPolicy(sleep=sleep))
    with pytest.raises(TransportError) as info:
        client.get('user')
    assert info.value.kind == 'scheme'
    assert str(info.value) == ("GET %s/user: the server at 127.0.0.1:%d speaks only HTTPS, not plain HTTP; check the URL's "
                               "scheme and port" % (api_url, evil.port))
    assert sleep.delays == [], 'a scheme mix-up must not be retried as a dropped connection'


@pytest.mark.parametrize('encoding', ENCODINGS)
@pytest.mark.parametrize('route', ['echo', 'echo-oauth', 'echo-text'])
def test_an_echo_of_the_credentials_is_redacted_in_any_encoding(route, encoding, make_http, evil):
    status, headers, body = make_http(ca_path=evil.ca_file).request(
        'POST', evil.url + '/%s/%s/site/oauth2/access_token' % (route, encoding), headers={'Authorization': 'Basic ' + BASIC},
        data='grant_type=refresh_token&refresh_token=RefreshTok3n')
    message = error_message(status, headers, body, [BASIC, SECRET, 'RefreshTok3n'])
    # Decoded, so the echo is readable and its secrets are found, also where NULs sat between the characters.
    assert 'Authorization: Basic %s' % REDACTED in message, message
    for secret in (BASIC, SECRET, 'RefreshTok3n'):
        assert secret not in message.replace('\x00', '')
    assert len(message) <= 300


def test_a_body_that_is_not_text_is_not_quoted(make_http, evil):
    status, headers, body = make_http(ca_path=evil.ca_file).request('GET', evil.url + '/echo-bytes/x',
                                                                    headers={'Authorization': 'Bearer ' + TOKEN})
    assert error_message(status, headers, body, [TOKEN]) == (
        'a response body that is not text (%d bytes, content type application/octet-stream), not shown' % len(body))


def test_an_odd_content_type_is_redacted_and_bounded(make_http, evil):
    status, headers, body = make_http(ca_path=evil.ca_file).request('GET', evil.url + '/content-type/x',
                                                                    headers={'Authorization': 'Bearer ' + TOKEN})
    message = error_message(status, headers, body, [TOKEN])
    assert message.startswith('unexpected HTML response (text/html; echo="Bearer %s"; pad=xxx' % REDACTED)
    assert TOKEN not in message and len(message) < 150


def test_a_malformed_status_line_is_redacted_and_bounded(make_http, evil):
    with pytest.raises(TransportError) as info:
        make_http(ca_path=evil.ca_file).request('GET', evil.url + '/status-line/x', headers={'Authorization': 'Basic ' + BASIC})
    message = str(info.value)
    assert 'malformed status line HTTP/1.1 Basic %s 200 OK' % REDACTED in message
    assert BASIC not in message and SECRET not in message
    assert not info.value.retryable


@pytest.mark.parametrize('route', ['long', 'long-envelope'])
def test_a_long_error_text_is_bounded(route, make_http, evil):
    status, headers, body = make_http(ca_path=evil.ca_file).request('GET', evil.url + '/%s/x' % route)
    assert len(body) > 100000
    assert len(error_message(status, headers, body)) == 300


# --- insecure settings and bad headers ------------------------------------------------------


def test_validate_certs_false_warns(make_http):
    assert make_http(validate_certs=False).warnings == [INSECURE_WARNING]
    assert make_http().warnings == []
    assert 'anyone on the network path can read the credentials' in INSECURE_WARNING


def test_a_header_that_would_break_the_request_is_refused_unsent():
    # Port 1 refuses connections: a ValidationError (not a TransportError) shows nothing was sent.
    with pytest.raises(ValidationError) as info:
        PluginHttp().request('GET', 'https://127.0.0.1:1/x', headers={'Authorization': 'Bearer %s\n%s' % (TOKEN, TOKEN)})
    assert str(info.value) == 'GET https://127.0.0.1:1/x: the Authorization header has control characters; refusing to send it'


# --- the text helpers -----------------------------------------------------------------------


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_decode_body_reads_wide_encodings_with_or_without_a_bom(encoding):
    text = '{"error": {"message": "Zugriff verweigert für %s"}}' % SECRET
    assert decode_body(encode(text, encoding)) == text


@pytest.mark.parametrize('body', [b'\xff\xfe\xfd\xfc\xfb', b'a\x00b', b'\x00' * 8, b's\xffe\xffc\xffr\xffe\xfft\xff'])
def test_decode_body_refuses_what_is_not_text(body):
    assert decode_body(body) is None


def test_redaction_comes_before_truncation():
    # Cut first, the secret's first 30 characters would survive at the end of the message.
    shown = quote_server_text('x' * 280 + SECRET, [SECRET])
    assert shown == 'x' * 280 + REDACTED
    shown = quote_server_text('x' * 295 + SECRET, [SECRET])
    assert shown == 'x' * 295 + '**...'


def test_quoted_text_has_no_controls_and_no_secret_hidden_by_whitespace():
    assert quote_server_text('\x1b[31mred\x1b[0m\r\nnext\u202eline\x00end') == '[31mred [0m next line end'
    assert quote_server_text('a secret: ab\n  cd', ['ab cd']) == 'a secret: %s' % REDACTED
    assert quote_server_text('y' * 50, limit=10) == 'yyyyyyy...'


def test_json_escaped_secrets_are_redacted():
    assert redact('{"echo": "demoSecret+With\\/Odd=Chars0123456789"}', [SECRET]) == '{"echo": "%s"}' % REDACTED
    assert redact('"%s"' % json.dumps('tab\there')[1:-1], ['tab\there']) == '"%s"' % REDACTED


def test_request_secrets_finds_the_credentials_of_a_request():
    assert request_secrets({'Authorization': 'Basic ' + BASIC}, None) == [BASIC, '%s:%s' % (CLIENT_ID, SECRET), SECRET]
    assert request_secrets({'authorization': 'Bearer ' + TOKEN}, b'grant_type=refresh_token&refresh_token=R1%2B2&x=y') == \
        [TOKEN, 'R1+2']
    assert request_secrets({'Accept': 'application/json'}, b'\xff') == []


@pytest.mark.parametrize('url, expected', [
    ('https://x-token-auth:tok@bitbucket.org/acme/api.git', 'https://bitbucket.org/acme/api.git'),
    ('https://alice@bitbucket.org/acme/api.git#frag', 'https://bitbucket.org/acme/api.git#frag'),
    ('https://bitbucket.org/acme/api.git', 'https://bitbucket.org/acme/api.git'),
    ('https://bitbucket.org/a?email=a@b', 'https://bitbucket.org/a?email=a@b'),
    ('https://u:p@[::1/x', None),
    (None, None),
])
def test_strip_userinfo(url, expected):
    assert strip_userinfo(url) == expected


@pytest.mark.parametrize('value', ['http://127.0.0.1:8443/2.0', 'http://127.9.8.7/x', 'http://[::1]:9/x', 'http://localhost:8080/x',
                                   'http://LocalHost/x'])
def test_plain_http_is_accepted_for_loopback_only(value):
    assert validate_url('api_url', value) == value


@pytest.mark.parametrize('value', ['http://api.bitbucket.org/2.0', 'http://10.0.0.1/x', 'http://localhost.evil.example/x',
                                   'http://[::2]/x', 'http://127.0.0.1.nip.io/x', 'HTTP://bitbucket.org/site/oauth2/access_token'])
def test_plain_http_elsewhere_is_refused(value):
    with pytest.raises(ValidationError) as info:
        validate_url('token_url', value)
    assert str(info.value) == ("token_url must be an https:// URL: over http:// the credentials would cross the network in "
                               "clear text (http:// is accepted only for 127.0.0.1, ::1 and localhost), got 'http://%s'"
                               % value.split('://', 1)[1])
