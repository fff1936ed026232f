# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Receive one OAuth authorization redirect on a loopback port (the browser side of the code grant)."""

from __future__ import annotations

import hmac
import html
import socket
import time

from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import CallbackError

LOOPBACK_HOSTS = ('127.0.0.1', 'localhost', '::1')

PAGE = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>codeferry.bitbucket</title></head>'
    '<body><h1>%s</h1><p>%s</p></body></html>'
)


def parse_redirect_uri(redirect_uri):
    """Return (host, port, path) of a loopback http:// redirect URI, or raise CallbackError."""
    try:
        parts = urlsplit(redirect_uri)
        port = parts.port
    except ValueError as exc:
        raise CallbackError('redirect_uri %r is not a valid URL: %s' % (redirect_uri, exc))
    if parts.scheme != 'http' or parts.hostname not in LOOPBACK_HOSTS or not port:
        raise CallbackError(
            'redirect_uri must be an http:// URL on a loopback address with an explicit port, '
            'such as http://127.0.0.1:8976/; got %r' % redirect_uri)
    return parts.hostname, port, parts.path or '/'


class _Server(HTTPServer):
    """HTTPServer that remembers the outcome of the one redirect it is waiting for."""

    def __init__(self, address, family, path, state):
        self.address_family = family
        self.expected_path = path
        self.expected_state = state
        self.code = None
        self.error = None
        HTTPServer.__init__(self, address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
        server = self.server
        parts = urlsplit(self.path)
        if parts.path != server.expected_path:
            self._answer(404, 'Not found', 'This listener only accepts the OAuth redirect.')
            return
        query = parse_qs(parts.query)
        state = query.get('state', [''])[0]
        if not hmac.compare_digest(state.encode('utf-8'), server.expected_state.encode('utf-8')):
            # A redirect with the wrong state is not ours: refuse it and keep waiting for the real one.
            self._answer(400, 'State mismatch', 'This redirect does not belong to the running playbook.')
            return
        if 'error' in query:
            server.error = '%s: %s' % (query['error'][0], query.get('error_description', ['access was not granted'])[0])
            # The text comes from the query string: escape it, the page is served on a loopback port.
            self._answer(400, 'Access not granted', 'Bitbucket reported: %s' % html.escape(server.error))
            return
        code = query.get('code', [''])[0]
        if not code:
            server.error = 'the redirect carried no code'
            self._answer(400, 'No code', 'The redirect carried no authorization code.')
            return
        server.code = code
        self._answer(200, 'Access granted', 'The playbook has the authorization code. You can close this window.')

    def _answer(self, status, title, text):
        body = (PAGE % (title, text)).encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        # The request line holds the code: never log it.
        pass


def wait_for_code(redirect_uri, state, timeout):
    """Listen on the redirect URI until a redirect with the right state arrives; return its code."""
    if not state:
        raise CallbackError('state must not be empty')
    if timeout <= 0:
        raise CallbackError('timeout must be a positive number of seconds, got %s' % timeout)
    host, port, path = parse_redirect_uri(redirect_uri)
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    try:
        server = _Server((host, port), family, path, state)
    except OSError as exc:
        raise CallbackError('cannot listen on %s port %d for the redirect: %s' % (host, port, exc.strerror or exc))
    deadline = time.monotonic() + timeout
    try:
        while server.code is None and server.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallbackError(
                    'no authorization redirect reached %s within %d seconds; open the authorize URL in a '
                    'browser and grant access' % (redirect_uri, timeout))
            server.timeout = min(left, 1.0)
            server.handle_request()
    finally:
        server.server_close()
    if server.error:
        raise CallbackError('authorization failed: %s' % server.error)
    return server.code
