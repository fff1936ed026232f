# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The REST client: retries and backoff, token renewal on expiry, pagination."""

from __future__ import annotations

import threading
import time

from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient, page_url, remaining_page_urls
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth, AuthMethod
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    TransportError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import RetryPolicy, parse_retry_after

from bitbucket_fakes import FakeHttp, NoSleep, Sequence, reply

API = 'https://api.example/2.0'
RATE_LIMITED = reply(429, 'Rate limit for this resource has been exceeded', content_type='text/plain')
EXPIRED = reply(401, {'type': 'error', 'error': {'message': 'Access token expired. Use your refresh token to obtain a new access token.'}})
DROPPED = TransportError('GET x: connection dropped by the server', kind='dropped')


def client(handler, auth=None, sleep=None, **kwargs):
    policy = RetryPolicy(sleep=sleep or NoSleep(), rand=lambda: 0.5)
    http = FakeHttp(handler)
    return BitbucketClient(http, API, auth or AccessTokenAuth('tok'), retry=policy, **kwargs), http


# --- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize('failure', [RATE_LIMITED, reply(502, b''), reply(503, 'busy', content_type='text/plain'),
                                     reply(504, b''), DROPPED])
def test_transient_failures_are_retried(failure):
    sleep = NoSleep()
    api, http = client(Sequence(failure, failure, reply(200, {'ok': 1})), sleep=sleep)
    assert api.get('user') == {'ok': 1}
    assert len(http.calls) == 3
    assert len(sleep.delays) == 2


def test_backoff_is_exponential_bounded_and_jittered():
    policy = RetryPolicy(base=0.5, cap=8.0, rand=lambda: 1.0)
    assert [policy.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    policy = RetryPolicy(base=0.5, cap=8.0, rand=lambda: 0.0)
    assert [policy.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_gives_up_after_max_retries_with_the_message():
    sleep = NoSleep()
    api, http = client(Sequence(RATE_LIMITED), sleep=sleep)
    with pytest.raises(RateLimitedError) as info:
        api.get('repositories', 'acme')
    assert len(http.calls) == 6 and len(sleep.delays) == 5
    assert str(info.value) == ('GET %s/repositories/acme: HTTP 429: Rate limit for this resource has been exceeded '
                               '(gave up after 5 retries)' % API)


def test_persistent_drop_gives_up_as_transport_error():
    api, http = client(Sequence(DROPPED))
    with pytest.raises(TransportError, match=r'gave up after 5 retries'):
        api.get('user')
    assert len(http.calls) == 6


def test_retry_after_is_honoured():
    sleep = NoSleep()
    api, dummy = client(Sequence(reply(429, 'slow down', headers={'retry-after': '3'}, content_type='text/plain'),
                                 reply(200, {})), sleep=sleep)
    api.get('user')
    assert sleep.delays == [3.0]


def test_a_retry_after_above_the_cap_is_bounded_and_the_message_says_why():
    sleep = NoSleep()
    api, http = client(Sequence(reply(429, 'Rate limit for this resource has been exceeded', headers={'retry-after': '100000'},
                                      content_type='text/plain')), sleep=sleep)
    with pytest.raises(RateLimitedError) as info:
        api.get('user')
    assert sleep.delays == [60.0] * 5 and len(http.calls) == 6
    assert str(info.value) == ('GET %s/user: HTTP 429: Rate limit for this resource has been exceeded (gave up after 5 retries; '
                               'the server asked to wait 100000 s (Retry-After), longer than the 60 s this client waits)' % API)


def test_a_retry_after_within_the_cap_is_not_mentioned():
    api, dummy = client(Sequence(reply(503, 'busy', headers={'retry-after': '60'}, content_type='text/plain')))
    with pytest.raises(ApiError) as info:
        api.get('user')
    assert str(info.value).endswith('HTTP 503: busy (gave up after 5 retries)')


@pytest.mark.parametrize('value, expected', [('inf', 60.0), ('nan', None), ('1e400', 60.0)])
def test_retry_after_that_is_not_a_finite_number(value, expected):
    policy = RetryPolicy()
    parsed = parse_retry_after(value)
    assert (None if parsed is None else policy.delay(0, parsed)) == expected


def test_a_404_without_an_envelope_says_the_url_may_not_be_an_api_root():
    api, dummy = client(Sequence(reply(404, 'Not Found', content_type='text/plain')))
    with pytest.raises(NotFoundError) as info:
        api.get('repositories', 'acme')
    assert str(info.value) == ('GET %s/repositories/acme: HTTP 404: Not Found; the URL may not be a Bitbucket REST API root '
                               '(does api_url end in /2.0, or in /rest/api/1.0 for Data Center?)' % API)


def test_a_404_with_an_envelope_is_bitbucket_speaking():
    api, dummy = client(Sequence(reply(404, {'type': 'error', 'error': {'message': 'Repository acme/x not found'}})))
    with pytest.raises(NotFoundError) as info:
        api.get('repositories', 'acme', 'x')
    assert str(info.value) == 'GET %s/repositories/acme/x: HTTP 404: Repository acme/x not found' % API


def test_an_echo_that_straddles_the_cut_leaks_nothing():
    # The bearer token sits where a 300-character cut would fall: redaction comes first.
    token = 'Zq8-given-token-value-that-is-long-1234567890'

    def echo(method, url, headers, data):
        return reply(400, 'x' * 280 + ' ' + headers['Authorization'], content_type='text/plain')
    api, dummy = client(echo, auth=AccessTokenAuth(token))
    with pytest.raises(ApiError) as info:
        api.get('user')
    assert token[:6] not in str(info.value)


def test_retry_after_forms():
    assert parse_retry_after('2') == 2.0
    assert parse_retry_after('-5') == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after('soon') is None
    assert parse_retry_after('Wed, 25 Nov 2026 12:00:10 GMT', now=1795608000.0) == 10.0


@pytest.mark.parametrize('failure', [reply(400, {'type': 'error', 'error': {'message': 'bad q'}}), reply(404, {}), reply(500, b'')])
def test_other_errors_fail_at_once(failure):
    api, http = client(Sequence(failure))
    with pytest.raises(Exception):
        api.get('x')
    assert len(http.calls) == 1


@pytest.mark.parametrize('kind', ['refused', 'timeout', 'tls', 'dns'])
def test_connection_failures_other_than_drops_fail_at_once(kind):
    api, http = client(Sequence(TransportError('GET x: ' + kind, kind=kind)))
    with pytest.raises(TransportError):
        api.get('x')
    assert len(http.calls) == 1


# --- token renewal ------------------------------------------------------------------------


class RenewingAuth(AuthMethod):
    name = 'test'
    can_refresh = True

    def __init__(self):
        super(RenewingAuth, self).__init__()
        self.generation = 1
        self.refreshes = 0

    def headers(self):
        return {'Authorization': 'Bearer t%d' % self.generation}

    def refresh(self, failed_headers):
        if failed_headers['Authorization'] == self.headers()['Authorization']:
            self.refreshes += 1
            self.generation += 1


def test_expired_token_is_renewed_once_and_the_request_retried():
    auth = RenewingAuth()
    api, http = client(Sequence(EXPIRED, reply(200, {'ok': 1})), auth=auth)
    assert api.get('user') == {'ok': 1}
    assert auth.refreshes == 1
    assert [call[2]['Authorization'] for call in http.calls] == ['Bearer t1', 'Bearer t2']


def test_second_expiry_is_not_renewed_again():
    auth = RenewingAuth()
    api, http = client(Sequence(EXPIRED), auth=auth)
    with pytest.raises(AuthenticationError, match='HTTP 401: Access token expired'):
        api.get('user')
    assert auth.refreshes == 1 and len(http.calls) == 2


def test_given_access_token_is_never_renewed():
    api, http = client(Sequence(EXPIRED), auth=AccessTokenAuth('Zq8-given-token-value'))
    with pytest.raises(AuthenticationError) as info:
        api.get('user')
    assert len(http.calls) == 1
    assert 'Zq8-given-token-value' not in str(info.value)


def test_other_401_is_not_renewed():
    auth = RenewingAuth()
    api, dummy = client(Sequence(reply(401, {'type': 'error', 'error': {'message': 'Token is invalid, expired, or not supported '
                                                                                   'for this endpoint.'}})), auth=auth)
    with pytest.raises(AuthenticationError):
        api.get('user')
    assert auth.refreshes == 0


# --- URLs and pagination ------------------------------------------------------------------


def test_url_quotes_each_segment():
    api, dummy = client(Sequence(reply(200, {})))
    assert api.url('repositories', 'acme', 'api', 'refs', 'branches', 'release/1.x') == \
        API + '/repositories/acme/api/refs/branches/release%2F1.x'
    assert api.url('repositories', '{7708d810-964c-403f-8c3b-2b7e44c4b6e5}') == \
        API + '/repositories/%7B7708d810-964c-403f-8c3b-2b7e44c4b6e5%7D'
    assert api.url('repositories', 'acme', q='project.key = "P"', sort=None, pagelen=100) == \
        API + '/repositories/acme?pagelen=100&q=project.key%20%3D%20%22P%22'


def test_page_url_replaces_only_the_page_parameter():
    next_url = API + '/repositories/acme?pagelen=100&q=name%20~%20%22a%22&page=2&sort=-name'
    assert page_url(next_url, 7) == API + '/repositories/acme?pagelen=100&q=name%20~%20%22a%22&page=7&sort=-name'
    assert page_url(API + '/x?after=opaque', 3) is None


def test_remaining_page_urls():
    first = {'size': 254, 'pagelen': 100, 'page': 1, 'next': API + '/r/acme?pagelen=100&page=2', 'values': []}
    assert remaining_page_urls(first) == [API + '/r/acme?pagelen=100&page=2', API + '/r/acme?pagelen=100&page=3']
    assert remaining_page_urls(dict(first, size=100)) is None
    assert remaining_page_urls(dict(first, next=None)) is None
    del first['size']
    assert remaining_page_urls(first) is None


def listing(total, pagelen_cap=100, with_size=True, cursor=False, delay=0.0, inflight=None):
    """A handler serving a paginated collection of `total` numbers like Bitbucket does."""
    lock = threading.Lock()

    def handler(method, url, headers, data):
        if inflight is not None:
            with lock:
                inflight['now'] += 1
                inflight['max'] = max(inflight['max'], inflight['now'])
        try:
            time.sleep(delay)
            query = parse_qs(urlsplit(url).query)
            pagelen = min(int(query.get('pagelen', ['10'])[0]), pagelen_cap)
            page = int(query.get('page', query.get('after', ['1']))[0])
            start = (page - 1) * pagelen
            body = {'pagelen': pagelen, 'values': list(range(start, min(start + pagelen, total)))}
            if with_size:
                body.update(size=total, page=page)
            if start + pagelen < total:
                key = 'after' if cursor else 'page'
                body['next'] = '%s/repositories/acme?pagelen=%d&%s=%d' % (API, pagelen, key, page + 1)
            return reply(200, body)
        finally:
            if inflight is not None:
                with lock:
                    inflight['now'] -= 1
    return handler


def test_paginate_fetches_remaining_pages_concurrently_in_order():
    inflight = {'now': 0, 'max': 0}
    api, http = client(listing(2550, delay=0.02, inflight=inflight))
    values = api.paginate('repositories', 'acme')
    assert values == list(range(2550))
    assert len(http.calls) == 26
    assert all('pagelen=100' in call[1] for call in http.calls)
    assert 1 < inflight['max'] <= 8


def test_paginate_follows_next_without_size():
    api, http = client(listing(250, with_size=False))
    assert api.paginate('repositories', 'acme') == list(range(250))
    assert len(http.calls) == 3


def test_paginate_follows_opaque_cursors():
    api, http = client(listing(250, cursor=True))
    assert api.paginate('repositories', 'acme') == list(range(250))
    assert len(http.calls) == 3


def test_paginate_single_page():
    api, http = client(listing(4))
    assert api.paginate('repositories', 'acme', q='x') == [0, 1, 2, 3]
    assert len(http.calls) == 1


def test_paginate_follows_next_of_the_last_page_if_the_collection_grew():
    pages = {
        1: reply(200, {'size': 2, 'pagelen': 1, 'values': ['a'], 'next': API + '/r?pagelen=1&page=2'}),
        2: reply(200, {'size': 3, 'pagelen': 1, 'values': ['b'], 'next': API + '/r?pagelen=1&page=3'}),
        3: reply(200, {'size': 3, 'pagelen': 1, 'values': ['c']}),
    }
    api, dummy = client(lambda m, url, h, d: pages[int(parse_qs(urlsplit(url).query).get('page', ['1'])[0])])
    assert api.paginate('r') == ['a', 'b', 'c']


def test_links_to_another_host_are_refused():
    api, http = client(Sequence(reply(200, {'values': [1], 'next': 'https://evil.example/steal?page=2'})))
    with pytest.raises(ProtocolError, match='refusing to follow a link to https://evil.example/steal'):
        api.paginate('repositories', 'acme')
    assert len(http.calls) == 1


def test_error_on_a_later_page_propagates():
    def handler(method, url, headers, data):
        if 'page=3' in url:
            return reply(404, {'type': 'error', 'error': {'message': 'gone'}})
        return listing(300)(method, url, headers, data)
    api, dummy = client(handler)
    with pytest.raises(NotFoundError, match='HTTP 404: gone'):
        api.paginate('repositories', 'acme')


def test_non_json_success_is_a_protocol_error():
    api, dummy = client(Sequence(reply(200, '<html>', content_type='text/html')))
    with pytest.raises(ProtocolError, match='not valid JSON'):
        api.get('user')
