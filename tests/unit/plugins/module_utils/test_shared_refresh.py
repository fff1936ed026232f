# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""After a 401, a token that another process already put in the shared cache is reused, not replaced.

Two real processes share one cache directory and talk HTTPS to the emulator, through the path an
API module takes: build_auth() -> BitbucketClient -> ClientCredentialsAuth.refresh().
"""

from __future__ import annotations

import multiprocessing

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import build_auth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import PluginHttp

from bitbucket_fakes import CLIENT_ID, SECRET

TIMEOUT = 60


def _client(info, cache_dir):
    http = PluginHttp(validate_certs=True, ca_path=info['ca_file'], timeout=30)
    params = {'client_id': CLIENT_ID, 'client_secret': SECRET, 'token_url': info['token_url'], 'cache': True,
              'cache_dir': cache_dir, 'timeout': 30}
    auth, dummy = build_auth(params, http, environ={})
    return BitbucketClient(http, info['api_url'], auth), auth


def _first(info, cache_dir, ready, go, results):
    """Process A: gets a token, waits while the server expires it and B renews it, then calls again."""
    try:
        client, auth = _client(info, cache_dir)
        client.get('repositories', 'acme')
        before = auth.token.access_token
        ready.set()
        if not go.wait(TIMEOUT):
            raise RuntimeError('never told to go on')
        client.get('repositories', 'acme')  # 401 Access token expired, then one refresh
        results.put(('A', before, auth.token.access_token))
    except Exception as exc:  # pylint: disable=broad-except
        results.put(('A', 'error', '%s: %s' % (type(exc).__name__, exc)))
        ready.set()


def _second(info, cache_dir, results):
    """Process B: finds A's token in the cache, gets the same 401 and renews it first."""
    try:
        client, auth = _client(info, cache_dir)
        client.get('repositories', 'acme')
        results.put(('B', None, auth.token.access_token))
    except Exception as exc:  # pylint: disable=broad-except
        results.put(('B', 'error', '%s: %s' % (type(exc).__name__, exc)))


def test_a_renewal_reuses_the_token_another_process_put_in_the_cache(make_emulator, tmp_path):
    emulator = make_emulator()
    context = multiprocessing.get_context('fork')
    cache_dir = str(tmp_path / 'tokens')
    ready, go, results = context.Event(), context.Event(), context.Queue()
    first = context.Process(target=_first, args=(emulator.info, cache_dir, ready, go, results))
    second = context.Process(target=_second, args=(emulator.info, cache_dir, results))
    first.start()
    try:
        assert ready.wait(TIMEOUT)
        emulator.expire()  # A's token now gets "401 Access token expired."
        second.start()
        second.join(TIMEOUT)
        go.set()
        first.join(TIMEOUT)
    finally:
        for process in (first, second):
            if process.is_alive():
                process.kill()
    outcomes = dict((name, (one, two)) for name, one, two in (results.get(timeout=5) for dummy in range(2)))
    assert 'error' not in (outcomes['A'][0], outcomes['B'][0]), outcomes
    first_token, renewed_by_a = outcomes['A']
    renewed_by_b = outcomes['B'][1]
    assert renewed_by_b != first_token
    # A's refresh found B's new token in the cache and used it: two tokens in all, not three.
    assert renewed_by_a == renewed_by_b
    assert emulator.stats()['requests']['token'] == 2
