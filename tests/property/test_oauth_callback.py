# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""oauth_callback with generated options, and a browser that sends a generated redirect first.

Whenever the module listens, a thread plays the browser: it sends one generated request (any
path and query), then the redirect the module waits for. The module must return the code of the
first request it accepts, or fail cleanly; it must never hang past its timeout.
"""

from __future__ import annotations

import http.client
import socket
import string
import threading
import time

from urllib.parse import quote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.codeferry.bitbucket.plugins.modules import oauth_callback

from property_helpers import (
    anything,
    assert_clean,
    count,
    examples,
    odd_text,
    path_like,
    place,
    run_module,
    wrong_types,
)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Browser(threading.Thread):
    """Sends request_target (if any) and then the real redirect to the listener, until the module is done."""

    def __init__(self, host, port, requests):
        threading.Thread.__init__(self, daemon=True)
        self.host = host
        self.port = port
        self.requests = requests
        self.done = threading.Event()

    def run(self):
        pending = list(self.requests)
        while pending and not self.done.is_set():
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
                connection.putrequest('GET', pending[0], skip_host=False, skip_accept_encoding=True)
                connection.endheaders()
                connection.getresponse().read()
                connection.close()
                pending.pop(0)
            except (OSError, http.client.HTTPException, ValueError, UnicodeError):
                # Not listening yet, or a request target http.client refuses to send: try again, or skip it.
                if pending and not self._sendable(pending[0]):
                    pending.pop(0)
                time.sleep(0.02)

    @staticmethod
    def _sendable(target):
        return all(33 <= ord(char) < 127 for char in target)


requests = st.one_of(
    st.tuples(st.sampled_from(['/', '/callback', '/x', '//', '/?', '']), st.sampled_from(['', '?', '?state=', '?code=&state=']),
              st.dictionaries(st.sampled_from(['state', 'code', 'error', 'error_description', 'x']), odd_text, max_size=3))
    .map(lambda parts: parts[0] + parts[1] + '&'.join('%s=%s' % (key, quote(value, safe='', errors='surrogatepass'))
                                                      for key, value in parts[2].items())),
    odd_text.map(lambda text: '/' + quote(text, safe='/?&=', errors='surrogatepass')),
)
redirect_paths = st.one_of(st.sampled_from(['/', '/callback', '/a/b', '', '/%7E', '/cb?x=1']), odd_text.map(lambda text: '/' + text))


CODES = st.text(string.ascii_letters + string.digits + '-._~+/=', min_size=1, max_size=30)
HOSTS = ['127.0.0.1', '127.0.0.1', '[::1]', 'localhost', '0.0.0.0', '::1', 'example.invalid']
TIMEOUTS = st.one_of(st.just(1), st.integers(-3, 0), st.sampled_from(['0', '-1', 'soon', '1.5', True, [], [3], {}, {'a': 1}]))


@settings(max_examples=examples(200))
@given(scheme=st.sampled_from(['http', 'http', 'https', 'HTTP', '']), host=st.sampled_from(HOSTS), path=redirect_paths,
       port_kind=st.sampled_from(['free', 'free', 'none', '0', 'bad', 'huge']),
       state=st.one_of(st.just('s3cret-state-value'), odd_text, wrong_types), code=CODES, timeout=TIMEOUTS,
       ready_path=st.one_of(st.none(), path_like), first=st.one_of(st.none(), requests), redirect_uri=st.one_of(st.none(), anything))
def test_oauth_callback(target, scheme, host, path, port_kind, state, code, timeout, ready_path, first, redirect_uri):
    count('module oauth_callback')
    port = free_port()
    hostport = {'free': '%s:%d' % (host, port), 'none': host, '0': host + ':0', 'bad': host + ':x', 'huge': host + ':65536'}[port_kind]
    uri = redirect_uri if redirect_uri is not None else '%s://%s%s' % (scheme, hostport, path)
    args = {'redirect_uri': uri, 'state': state, 'timeout': timeout}
    if ready_path is not None:
        args['ready_path'] = ready_path
    real = None
    state_text = state
    if isinstance(state, (int, float)):
        state_text = str(state)  # what Ansible converts a number to
    if isinstance(state_text, str) and isinstance(uri, str):
        try:
            real = '%s?code=%s&state=%s' % (urlsplit(uri).path or '/', quote(code, safe='', errors='surrogatepass'),
                                            quote(state_text, safe='', errors='surrogatepass'))
        except ValueError:
            real = None
    browser = Browser('::1' if host == '[::1]' else '127.0.0.1', port, [request for request in (first, real) if request])
    with target.case_dir() as case_dir:
        args = place(args, case_dir)
        browser.start()
        try:
            outcome = run_module(oauth_callback.main, args, case_dir, target.root)
        finally:
            browser.done.set()
            browser.join(5)
    assert_clean(outcome, target.static_secrets)
    if not outcome.result.get('failed'):
        assert isinstance(outcome.result['code'], str) and outcome.result['code']
        if first is None:
            assert outcome.result['code'] == code
