# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Receive one OAuth authorization redirect on a loopback port (the browser side of the code grant)."""

from __future__ import annotations

import hmac
import html
import os
import socket
import threading
import time

from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import CallbackError

# Literal addresses only: a name such as localhost may resolve to 127.0.0.1 here while the browser
# tries [::1] first, where another local user can listen on the same port (RFC 8252, section 8.3).
LOOPBACK_HOSTS = ('127.0.0.1', '::1')

# Seconds a client may stay silent in the middle of its request (or while we answer) before it is
# dropped; the overall timeout is enforced separately.
CONNECTION_SECONDS = 10

# Connections still waiting to send a request. Past this many, the oldest is dropped, so a flood of
# idle sockets cannot keep the browser's redirect out.
MAX_WAITING = 16

# How often the main loop looks at the clock and at the outcome.
POLL_SECONDS = 0.2

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
    path = parts.path or '/'
    if parts.scheme == 'http' and parts.hostname == 'localhost' and port:
        raise CallbackError(
            'redirect_uri %r names localhost; use a literal loopback address such as http://127.0.0.1:%d%s, '
            'and set the same callback URL on the OAuth consumer: a name can lead the browser to an address '
            'that another local user holds on that port' % (redirect_uri, port, path))
    if parts.scheme != 'http' or parts.hostname not in LOOPBACK_HOSTS or not port:
        raise CallbackError(
            'redirect_uri must be an http:// URL on a literal loopback address (127.0.0.1 or [::1]) with an '
            'explicit port, such as http://127.0.0.1:8976/; got %r' % redirect_uri)
    return parts.hostname, port, path


class _Server(ThreadingMixIn, HTTPServer):
    """Serves each connection in its own thread and remembers the outcome of the one redirect it waits for."""

    # The main loop decides when to stop; a thread stuck on a silent client must not delay it.
    daemon_threads = True
    block_on_close = False
    # A burst of connections (a browser opens several) must queue, not have its SYNs dropped.
    request_queue_size = 64

    def __init__(self, address, family, path, state):
        self.address_family = family
        self.expected_path = path
        self.expected_state = state
        self.code = None
        self.error = None
        self.lock = threading.Lock()
        self.waiting = {}  # connection -> when it was accepted, until its request has arrived
        HTTPServer.__init__(self, address, _Handler)

    def process_request(self, request, client_address):
        with self.lock:
            self.waiting[request] = time.monotonic()
            if len(self.waiting) > MAX_WAITING:
                self._drop(min(self.waiting, key=self.waiting.get))
        ThreadingMixIn.process_request(self, request, client_address)

    def shutdown_request(self, request):
        with self.lock:
            self.waiting.pop(request, None)
        HTTPServer.shutdown_request(self, request)

    def handle_error(self, request, client_address):
        # A client that hung up or was dropped is not our failure; never print a traceback.
        pass

    def request_arrived(self, request):
        with self.lock:
            self.waiting.pop(request, None)

    def finish(self, code=None, error=None):
        with self.lock:
            if self.code is None and self.error is None:
                self.code, self.error = code, error

    def close_all(self):
        """Stop listening and drop every connection that has not sent its request."""
        self.server_close()
        with self.lock:
            for request in list(self.waiting):
                self._drop(request)

    def _drop(self, request):
        # shutdown, not close: it wakes the thread blocked reading from it, which then closes it.
        del self.waiting[request]
        try:
            request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Handler(BaseHTTPRequestHandler):
    # Applies to each read and write on the connection.
    timeout = CONNECTION_SECONDS

    def do_GET(self):  # pylint: disable=invalid-name
        server = self.server
        server.request_arrived(self.request)
        code = error = None
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        state = query.get('state', [''])[0]
        if parts.path != server.expected_path:
            answer = (404, 'Not found', 'This listener only accepts the OAuth redirect.')
        elif not hmac.compare_digest(state.encode('utf-8'), server.expected_state.encode('utf-8')):
            # A redirect with the wrong state is not ours: refuse it and keep waiting for the real one.
            answer = (400, 'State mismatch', 'This redirect does not belong to the running playbook.')
        elif 'error' in query:
            error = '%s: %s' % (query['error'][0], query.get('error_description', ['access was not granted'])[0])
            # The text comes from the query string: escape it, the page is served on a loopback port.
            answer = (400, 'Access not granted', 'Bitbucket reported: %s' % html.escape(error))
        elif not query.get('code', [''])[0]:
            error = 'the redirect carried no code'
            answer = (400, 'No code', 'The redirect carried no authorization code.')
        else:
            code = query['code'][0]
            answer = (200, 'Access granted', 'The playbook has the authorization code. You can close this window.')
        try:
            self._answer(*answer)
        finally:
            # Only now, so the browser has its page before the main loop closes the listener.
            if code or error:
                server.finish(code, error)

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


def _create_ready_file(path):
    # O_EXCL: a file or symlink already at the path is refused, never followed or reused.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise CallbackError('ready_path %s already exists; it must name a file that does not exist yet' % path)
    except OSError as exc:
        raise CallbackError('cannot create ready_path %s: %s' % (path, exc.strerror or exc))


def wait_for_code(redirect_uri, state, timeout, ready_path=None):
    """Listen on the redirect URI until a redirect with the right state arrives; return its code.

    Once the port is bound, ready_path (if given) is created empty; it is removed when listening stops.
    """
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
    ready = False
    try:
        if ready_path:
            _create_ready_file(ready_path)
            ready = True
        while server.code is None and server.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallbackError(
                    'no authorization redirect reached %s within %d seconds; open the authorize URL in a '
                    'browser and grant access' % (redirect_uri, timeout))
            server.timeout = min(left, POLL_SECONDS)
            server.handle_request()
    finally:
        server.close_all()
        if ready:
            try:
                os.unlink(ready_path)
            except FileNotFoundError:
                pass
    if server.error:
        raise CallbackError('authorization failed: %s' % server.error)
    return server.code
