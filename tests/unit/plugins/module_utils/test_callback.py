# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The loopback listener of the authorization-code bootstrap, driven by real HTTP requests."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.request

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._callback import MAX_WAITING, parse_redirect_uri, wait_for_code
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


def connect(port, family=socket.AF_INET, host='127.0.0.1'):
    """A raw client connection once the listener is up (the caller closes it)."""
    for dummy in range(100):
        sock = socket.socket(family)
        try:
            sock.connect((host, port))
            return sock
        except ConnectionRefusedError:
            sock.close()
            time.sleep(0.05)
    raise AssertionError('listener never accepted a connection')


def listen(redirect_uri, state, timeout=20, **kwargs):
    outcome = {}

    def target():
        started = time.monotonic()
        try:
            outcome['code'] = wait_for_code(redirect_uri, state, timeout, **kwargs)
        except CallbackError as exc:
            outcome['error'] = str(exc)
        outcome['seconds'] = time.monotonic() - started

    # daemon: a listener that hangs (the defect these tests catch) must not hang pytest too.
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread, outcome, within):
    """Wait for the listener thread; return its outcome without the time it took."""
    thread.join(within)
    assert not thread.is_alive(), 'the listener is still running after %s s' % within
    outcome = dict(outcome)
    outcome.pop('seconds')
    return outcome


@pytest.mark.parametrize('uri', [
    'https://127.0.0.1:8976/', 'http://example.com:8976/', 'http://127.0.0.1/', 'http://10.0.0.1:80/', 'not a url', 'http://127.0.0.1:99999/',
])
def test_only_loopback_http_uris_with_a_port(uri):
    with pytest.raises(CallbackError, match='redirect_uri'):
        parse_redirect_uri(uri)


def test_parse_keeps_host_port_and_path():
    assert parse_redirect_uri('http://127.0.0.1:8976/cb') == ('127.0.0.1', 8976, '/cb')
    assert parse_redirect_uri('http://127.0.0.1:8976') == ('127.0.0.1', 8976, '/')
    assert parse_redirect_uri('http://[::1]:8976/cb') == ('::1', 8976, '/cb')


@pytest.mark.parametrize('uri', ['http://localhost:8976/', 'http://LocalHost:8976/cb'])
def test_localhost_is_refused_with_the_literal_address_to_use(uri):
    # A name may resolve to 127.0.0.1 here while the browser tries [::1], which another user can hold.
    with pytest.raises(CallbackError, match=r'literal loopback address.*http://127\.0\.0\.1:8976/'):
        parse_redirect_uri(uri)


def ipv6_loopback_socket():
    try:
        sock = socket.socket(socket.AF_INET6)
    except OSError:
        pytest.skip('this machine has no IPv6')
    try:
        sock.bind(('::1', 0))
    except OSError:
        sock.close()
        pytest.skip('this machine has no IPv6 loopback address')
    return sock


def test_localhost_uri_fails_when_another_process_holds_ipv6_loopback_on_the_port():
    # Another local user holds [::1] on the port: the module must not listen on 127.0.0.1 alone,
    # where a browser that tries ::1 first would hand the code and state to the other user.
    with ipv6_loopback_socket() as other:
        other.listen(1)
        port = other.getsockname()[1]
        thread, outcome = listen('http://localhost:%d/' % port, 's', timeout=3)
        thread.join(2)
        with socket.socket() as probe:
            listening_on_ipv4 = probe.connect_ex(('127.0.0.1', port)) == 0
        outcome = finished(thread, outcome, 5)
    assert not listening_on_ipv4
    assert 'literal loopback address' in outcome['error']


def test_ipv6_literal_redirect_uri_is_served():
    with ipv6_loopback_socket() as probe:
        port = probe.getsockname()[1]
    thread, outcome = listen('http://[::1]:%d/cb' % port, 's6')
    assert get('http://[::1]:%d/cb?code=six&state=s6' % port)[0] == 200
    assert finished(thread, outcome, 10) == {'code': 'six'}


def test_wrong_state_and_wrong_path_are_refused_then_the_right_redirect_wins():
    port = free_port()
    base = 'http://127.0.0.1:%d' % port
    thread, outcome = listen(base + '/cb', 'the-state')
    assert get(base + '/other?code=c1&state=the-state')[0] == 404
    assert get(base + '/cb?code=c2&state=forged')[0] == 400
    status, body = get(base + '/cb?code=the-code&state=the-state')
    assert status == 200 and 'Access granted' in body
    assert finished(thread, outcome, 10) == {'code': 'the-code'}


def test_denied_access_is_reported():
    port = free_port()
    base = 'http://127.0.0.1:%d/' % port
    thread, outcome = listen(base, 's')
    assert get(base + '?error=access_denied&error_description=denied+by+user&state=s')[0] == 400
    assert finished(thread, outcome, 10) == {'error': 'authorization failed: access_denied: denied by user'}


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
    assert status == 400
    assert '<script>' not in body and '&lt;script&gt;' in body
    assert 'access_denied' in finished(thread, outcome, 10)['error']


# Clients that never finish a request: a browser's preconnect, a stalled or hostile local process.

def test_an_idle_connection_does_not_stretch_the_timeout():
    port = free_port()
    thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', timeout=3)
    with connect(port):
        thread.join(8)
        seconds = outcome.get('seconds')
        result = finished(thread, outcome, 1)
    assert seconds < 5
    assert 'within 3 seconds' in result['error']


def test_an_idle_connection_does_not_starve_the_redirect():
    port = free_port()
    thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', timeout=20)
    with connect(port):
        started = time.monotonic()
        status, dummy = get('http://127.0.0.1:%d/?code=the-code&state=s' % port)
        answered = time.monotonic() - started
        result = finished(thread, outcome, 3)
    assert status == 200 and answered < 2
    assert result == {'code': 'the-code'}


def test_many_idle_connections_neither_starve_the_redirect_nor_stretch_the_timeout():
    port = free_port()
    threads_before = threading.active_count()
    thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', timeout=20)
    idle = [connect(port) for dummy in range(40)]
    try:
        # The oldest waiting connections are dropped, so threads stay bounded (listener + MAX_WAITING + slack).
        time.sleep(0.5)
        assert threading.active_count() - threads_before <= 1 + MAX_WAITING + 2
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b''
        started = time.monotonic()
        status, dummy = get('http://127.0.0.1:%d/?code=the-code&state=s' % port)
        answered = time.monotonic() - started
        result = finished(thread, outcome, 3)
    finally:
        for sock in idle:
            sock.close()
    assert status == 200 and answered < 3
    assert result == {'code': 'the-code'}

    thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', timeout=3)
    idle = [connect(port) for dummy in range(40)]
    try:
        thread.join(8)
        seconds = outcome.get('seconds')
        result = finished(thread, outcome, 1)
    finally:
        for sock in idle:
            sock.close()
    assert seconds < 5 and 'within 3 seconds' in result['error']


def trickle(sock, stop):
    """Slow loris: half a request line, then one more byte every 0.3 s, never the end of the line."""
    try:
        sock.sendall(b'GET /?code=stalled&sta')
        while not stop.wait(0.3):
            sock.sendall(b'x')
    except OSError:
        pass  # the listener dropped us, as it should


def test_a_half_request_line_that_trickles_neither_starves_the_redirect_nor_stretches_the_timeout():
    port = free_port()
    for redirect in (True, False):
        thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', timeout=3)
        stop = threading.Event()
        sock = connect(port)
        loris = threading.Thread(target=trickle, args=(sock, stop), daemon=True)
        loris.start()
        try:
            if redirect:
                time.sleep(0.5)
                assert get('http://127.0.0.1:%d/?code=the-code&state=s' % port)[0] == 200
            thread.join(8)
            seconds = outcome.get('seconds')
            result = finished(thread, outcome, 1)
        finally:
            stop.set()
            loris.join(5)
            sock.close()
        if redirect:
            assert result == {'code': 'the-code'} and seconds < 2
        else:
            assert seconds < 5 and 'within 3 seconds' in result['error']


def test_idle_connections_are_closed_when_the_listener_returns():
    port = free_port()
    thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', timeout=2)
    with connect(port) as idle:
        finished(thread, outcome, 6)
        idle.settimeout(2)
        assert idle.recv(1024) == b''  # closed by the listener, not left to the client


def test_ready_path_appears_once_listening_and_goes_away_after(tmp_path):
    ready = tmp_path / 'listening'
    port = free_port()
    thread, outcome = listen('http://127.0.0.1:%d/' % port, 's', ready_path=str(ready))
    for dummy in range(100):
        if ready.exists():
            break
        time.sleep(0.05)
    # Once the file is there, the port is ours: a connection succeeds at the first attempt.
    with socket.create_connection(('127.0.0.1', port), timeout=2):
        pass
    mode = ready.stat().st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600
    assert ready.read_bytes() == b''
    assert get('http://127.0.0.1:%d/?code=c&state=s' % port)[0] == 200
    assert finished(thread, outcome, 10) == {'code': 'c'}
    assert not ready.exists()


def test_ready_path_is_not_created_when_the_port_is_taken(tmp_path):
    ready = tmp_path / 'listening'
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)
        with pytest.raises(CallbackError, match='cannot listen'):
            wait_for_code('http://127.0.0.1:%d/' % sock.getsockname()[1], 's', 1, ready_path=str(ready))
    assert not ready.exists()


@pytest.mark.parametrize('planted', ['file', 'symlink'])
def test_an_existing_ready_path_is_refused_and_left_alone(tmp_path, planted):
    ready = tmp_path / 'listening'
    target = tmp_path / 'target'
    target.write_text('keep')
    if planted == 'file':
        ready.write_text('keep')
    else:
        os.symlink(str(target), str(ready))
    with pytest.raises(CallbackError, match='ready_path .* already exists'):
        wait_for_code('http://127.0.0.1:%d/' % free_port(), 's', 1, ready_path=str(ready))
    assert os.path.lexists(str(ready)) and target.read_text() == 'keep'
