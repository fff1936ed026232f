# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Both HTTP backends against real local sockets: statuses, bodies and typed connection failures."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import TransportError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import ModuleHttp, PluginHttp

trustme = pytest.importorskip('trustme')


class FakeModule(object):
    """The little of AnsibleModule that fetch_url() reads."""

    def __init__(self, tmpdir, validate_certs=True):
        self.params = {'validate_certs': validate_certs}
        self.tmpdir = tmpdir
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise AssertionError('fetch_url called fail_json: %r' % (kwargs,))


@pytest.fixture(params=['plugin', 'module'])
def make_http(request, tmp_path):
    def factory(validate_certs=True, ca_path=None, timeout=5):
        if request.param == 'plugin':
            return PluginHttp(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
        return ModuleHttp(FakeModule(str(tmp_path), validate_certs), validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
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
