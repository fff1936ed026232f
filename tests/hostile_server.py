# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A hostile HTTPS server on loopback for security tests: it redirects, echoes and misbehaves.

    with HostileServer() as evil, HostileServer() as other:
        evil.redirect_to = other.url + '/landed'
        ... request evil.url + '/redirect/302/site/oauth2/access_token' with ca_path=evil.ca_file ...
        assert other.connections == 0 and other.requests == []

Every server shares one test CA (trustme), so a client trusting ca_file reaches all of them:
a request that never arrives was refused by the client, not by TLS. tls=False gives a plain
HTTP server. The first path segment picks the behaviour:

    /redirect/<code>/...         <code> with Location: redirect_to (default: another path here)
    /echo/<encoding>/...         400, a Bitbucket error envelope whose message is the request
    /echo-oauth/<encoding>/...   400, an OAuth error whose error_description is the request
    /echo-text/<encoding>/...    400, text/plain: the request
    /echo-bytes/...              400, the request with a 0xff byte after every character (not text)
    /status-line/...             a status line made of the Authorization header, then close
    /content-type/...            400 HTML whose Content-Type holds the Authorization header and 2 KB more
    /long/...                    400, an OAuth error with a 100 KB error_description
    /long-envelope/...           400, a Bitbucket error envelope with a 100 KB message
    /not-found/...               404, text/plain "Not Found" (no envelope)
    /retry-after/<seconds>/...   429 with that Retry-After
    .../access_token (POST)      200, a fresh token; its scope echoes the client secret of the Basic header
    .../repositories/... (GET)   200, one repository whose description is the Authorization header and
                                 whose name is the last client secret this server saw
    anything else                404 with an envelope

<encoding> is a Python codec (utf-8, utf-16-le, utf-32-be, ...), or one of utf-16, utf-32 and
utf-8-sig (Python writes a BOM for them), or utf-16-be-bom / utf-32-be-bom (big-endian with a BOM).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import http.server
import json
import os
import secrets
import ssl
import tempfile
import threading

import trustme

_CA = None
_CA_LOCK = threading.Lock()


def shared_ca():
    """(trustme.CA, path of its PEM file): one for the whole test session."""
    global _CA  # pylint: disable=global-statement
    with _CA_LOCK:
        if _CA is None:
            ca = trustme.CA()
            handle, path = tempfile.mkstemp(prefix='hostile-ca-', suffix='.pem')
            os.close(handle)
            ca.cert_pem.write_to_path(path)
            atexit.register(os.unlink, path)
            _CA = (ca, path)
        return _CA


def encode(text, encoding):
    if encoding.endswith('-bom'):
        codec = encoding[:-len('-bom')]
        return ('\ufeff' + text).encode(codec)
    return text.encode(encoding)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = 30

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    def handle(self):
        if self.server.tls:
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                return
        with self.server.lock:
            self.server.connections += 1
        super().handle()

    def _record(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        headers = dict(self.headers.items())
        with self.server.lock:
            self.server.requests.append({'method': self.command, 'path': self.path, 'headers': headers, 'body': body})
            authorization = headers.get('Authorization', '')
            if authorization.lower().startswith('basic '):
                try:
                    pair = base64.b64decode(authorization[6:]).decode('utf-8')
                    self.server.last_client_secret = pair.partition(':')[2]
                except (binascii.Error, ValueError):
                    pass
        lines = ['%s %s %s' % (self.command, self.path, self.request_version)]
        lines.extend('%s: %s' % item for item in headers.items())
        return '\n'.join(lines) + '\n\n' + body.decode('utf-8', 'replace')

    def _send(self, status, body, content_type='application/json', headers=None):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _answer(self):  # pylint: disable=too-many-return-statements,too-many-branches
        dump = self._record()
        segments = self.path.split('?', 1)[0].strip('/').split('/')
        first = segments[0]
        argument = segments[1] if len(segments) > 1 else 'utf-8'
        auth = self.headers.get('Authorization', '')
        if first == 'redirect':
            target = self.server.redirect_to or '/landed'
            return self._send(int(argument), b'', 'text/plain', {'Location': target})
        if first == 'echo':
            text = json.dumps({'type': 'error', 'error': {'message': dump}}, ensure_ascii=False)
            return self._send(400, encode(text, argument), 'application/json')
        if first == 'echo-oauth':
            text = json.dumps({'error': 'invalid_request', 'error_description': dump}, ensure_ascii=False)
            return self._send(400, encode(text, argument), 'application/json')
        if first == 'echo-text':
            return self._send(400, encode(dump, argument), 'text/plain')
        if first == 'echo-bytes':
            return self._send(400, b''.join(bytes([byte]) + b'\xff' for byte in dump.encode('utf-8')),
                              'application/octet-stream')
        if first == 'status-line':
            self.wfile.write(('HTTP/1.1 %s 200 OK\r\n\r\n' % auth).encode('latin-1'))
            self.close_connection = True
            return None
        if first == 'content-type':
            odd = 'text/html; echo="%s"; pad=%s' % (auth, 'x' * 2000)
            return self._send(400, b'<html><body>oops</body></html>', odd)
        if first == 'long':
            text = json.dumps({'error': 'invalid_request', 'error_description': dump + 'x' * 100000})
            return self._send(400, text.encode('utf-8'))
        if first == 'long-envelope':
            text = json.dumps({'type': 'error', 'error': {'message': dump + 'x' * 100000}})
            return self._send(400, text.encode('utf-8'))
        if first == 'not-found':
            return self._send(404, b'Not Found', 'text/plain')
        if first == 'retry-after':
            return self._send(429, b'slow down', 'text/plain', {'Retry-After': argument})
        if self.command == 'POST' and self.path.split('?', 1)[0].endswith('/access_token'):
            token = {'access_token': 'hostile-%s' % secrets.token_urlsafe(24), 'token_type': 'bearer', 'expires_in': 7200,
                     'scope': 'repository %s' % (self.server.last_client_secret or '')}
            with self.server.lock:
                self.server.tokens.append(token['access_token'])
            return self._send(200, json.dumps(token).encode('utf-8'))
        if self.command == 'GET' and '/repositories/' in self.path:
            repo = {'type': 'repository', 'slug': 'echo', 'full_name': 'acme/echo', 'name': self.server.last_client_secret,
                    'description': auth, 'is_private': True, 'links': {}}
            page = {'pagelen': 100, 'size': 1, 'page': 1, 'values': [repo]}
            return self._send(200, json.dumps(page).encode('utf-8'))
        return self._send(404, json.dumps({'type': 'error', 'error': {'message': 'no such path here'}}).encode('utf-8'))

    do_GET = do_POST = do_PUT = do_DELETE = _answer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls):
        super().__init__(('127.0.0.1', 0), _Handler)
        self.tls = tls
        self.context = None
        if tls:
            ca, dummy = shared_ca()
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert('127.0.0.1', 'localhost').configure_cert(self.context)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []
        self.tokens = []
        self.last_client_secret = None
        self.redirect_to = None

    def get_request(self):
        sock, address = self.socket.accept()
        if self.tls:
            # The handshake runs in the connection's thread: a client that never completes it stalls nobody.
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        pass


class HostileServer(object):
    """Start with `with`; url, ca_file, requests, connections, tokens, redirect_to are the test's handles."""

    def __init__(self, tls=True):
        self._server = _Server(tls)
        self._thread = None

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('https' if self._server.tls else 'http', self._server.server_address[1])

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def ca_file(self):
        return shared_ca()[1]

    @property
    def requests(self):
        with self._server.lock:
            return list(self._server.requests)

    @property
    def connections(self):
        with self._server.lock:
            return self._server.connections

    @property
    def tokens(self):
        with self._server.lock:
            return list(self._server.tokens)

    @property
    def redirect_to(self):
        return self._server.redirect_to

    @redirect_to.setter
    def redirect_to(self, value):
        self._server.redirect_to = value

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
