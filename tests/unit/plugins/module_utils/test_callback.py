# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The loopback listener of the authorization-code bootstrap, driven by real HTTP requests."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._callback import parse_redirect_uri, wait_for_code
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import CallbackError


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def get(url):
    """GET url once the listener is up; return (status, body)."""
    for dummy in range(100):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except urllib.error.URLError:
            time.sleep(0.05)
    raise AssertionError('listener never answered')


def listen(redirect_uri, state, timeout=20):
    outcome = {}

    def target():
        try:
            outcome['code'] = wait_for_code(redirect_uri, state, timeout)
        except CallbackError as exc:
            outcome['error'] = str(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize('uri', [
    'https://127.0.0.1:8976/', 'http://example.com:8976/', 'http://127.0.0.1/', 'http://10.0.0.1:80/', 'not a url', 'http://127.0.0.1:99999/',
])
def test_only_loopback_http_uris_with_a_port(uri):
    with pytest.raises(CallbackError, match='redirect_uri'):
        parse_redirect_uri(uri)


def test_parse_keeps_host_port_and_path():
    assert parse_redirect_uri('http://localhost:8976/cb') == ('localhost', 8976, '/cb')
    assert parse_redirect_uri('http://127.0.0.1:8976') == ('127.0.0.1', 8976, '/')


def test_wrong_state_and_wrong_path_are_refused_then_the_right_redirect_wins():
    port = free_port()
    base = 'http://127.0.0.1:%d' % port
    thread, outcome = listen(base + '/cb', 'the-state')
    assert get(base + '/other?code=c1&state=the-state')[0] == 404
    assert get(base + '/cb?code=c2&state=forged')[0] == 400
    status, body = get(base + '/cb?code=the-code&state=the-state')
    thread.join(10)
    assert status == 200 and 'Access granted' in body
    assert outcome == {'code': 'the-code'}


def test_denied_access_is_reported():
    port = free_port()
    base = 'http://127.0.0.1:%d/' % port
    thread, outcome = listen(base, 's')
    assert get(base + '?error=access_denied&error_description=denied+by+user&state=s')[0] == 400
    thread.join(10)
    assert outcome == {'error': 'authorization failed: access_denied: denied by user'}


def test_timeout_is_reported():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(CallbackError, match='within 1 seconds'):
        wait_for_code('http://127.0.0.1:%d/' % port, 's', 1)
    assert time.monotonic() - started < 5


def test_busy_port_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)
        with pytest.raises(CallbackError, match='cannot listen on 127.0.0.1 port'):
            wait_for_code('http://127.0.0.1:%d/' % sock.getsockname()[1], 's', 1)


def test_error_text_from_the_redirect_is_escaped_in_the_page():
    port = free_port()
    thread, outcome = listen('http://127.0.0.1:%d/' % port, 'st')
    status, body = get('http://127.0.0.1:%d/?state=st&error=access_denied&error_description=%%3Cscript%%3Ealert(1)%%3C/script%%3E' % port)
    thread.join()
    assert status == 400
    assert '<script>' not in body and '&lt;script&gt;' in body
    assert 'access_denied' in outcome['error']
