"""Test-only controls of the emulator: faults (429, delay, drop), stats, reset, latency, and concurrency."""

import base64
import concurrent.futures
import time

import pytest
import requests

ZERO = {'token': 0, 'api': 0, 'git': 0, 'archive': 0}


@pytest.fixture
def fresh(bb):
    """The shared emulator with its counters reset before (and after) the test."""
    bb.emu.reset()
    yield bb
    bb.emu.reset()


def counters(bb):
    return bb.emu.stats()['requests']


# ---------------------------------------------------------------- faults

def test_rate_limit_fault(fresh):
    bb = fresh
    headers = bb.bearer(bb.alice_token())
    bb.emu.fault(path_prefix='/2.0/repositories', status=429, count=3)
    for attempt in range(3):
        response = bb.get('/repositories/acme', headers=headers)
        assert response.status_code == 429, 'attempt %d' % attempt
        assert response.headers['Content-Type'].startswith('text/plain')
        assert response.text == bb.RATE_LIMITED
        assert 'Retry-After' not in response.headers
        if attempt == 0:
            # Another prefix is not affected and does not consume the fault.
            assert bb.get('/user', headers=headers).status_code == 200
    response = bb.get('/repositories/acme', headers=headers)
    assert response.status_code == 200
    assert response.json()['size'] == 254


def test_fault_matches_prefix_of_nested_paths(fresh):
    bb = fresh
    headers = bb.bearer(bb.alice_token())
    bb.emu.fault(path_prefix='/2.0/repositories', status=429, count=1)
    response = bb.get('/repositories/acme/api/refs/branches', headers=headers)
    assert response.status_code == 429
    assert response.text == bb.RATE_LIMITED
    assert bb.get('/repositories/acme/api/refs/branches', headers=headers).status_code == 200


def test_fault_on_token_endpoint(fresh):
    bb = fresh
    bb.emu.fault(path_prefix='/site/oauth2/access_token', status=429, count=1)
    response = bb.token_request({'grant_type': 'client_credentials'}, auth=bb.ALICE_CONSUMER)
    assert response.status_code == 429
    assert response.text == bb.RATE_LIMITED
    assert bb.token_request({'grant_type': 'client_credentials'}, auth=bb.ALICE_CONSUMER).status_code == 200


def test_delay_fault(fresh):
    bb = fresh
    headers = bb.basic(bb.ALICE, bb.ALICE_APP_PASSWORD)
    bb.emu.fault(path_prefix='/2.0/user', delay_ms=800, count=1)
    started = time.monotonic()
    response = bb.get('/user', headers=headers)
    slow = time.monotonic() - started
    assert response.status_code == 200
    assert slow >= 0.8
    # The fault is used up: later requests are fast again (the best of three, to ride out a busy machine).
    assert min(timed_get(bb, '/user', headers=headers) for dummy in range(3)) < 0.6


def test_drop_fault(fresh):
    bb = fresh
    headers = bb.basic(bb.ALICE, bb.ALICE_APP_PASSWORD)
    bb.emu.fault(path_prefix='/2.0/user', drop=True, count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        bb.get('/user', headers=headers)
    response = bb.get('/user', headers=headers)
    assert response.status_code == 200
    assert response.json()['username'] == 'alice'


@pytest.mark.parametrize('spec', [
    {'path_prefix': '2.0/repositories', 'status': 429, 'count': 1},
    {'path_prefix': '/2.0/repositories', 'status': 429, 'count': 0},
    {'path_prefix': '/2.0/repositories', 'status': 'soon', 'count': 1},
    {'path_prefix': '/2.0/repositories', 'count': 1},
    {'path_prefix': '/2.0/repositories', 'status': 429, 'count': 1, 'retry': True},
], ids=['relative-prefix', 'zero-count', 'text-status', 'no-fault', 'unknown-key'])
def test_bad_fault_specs_are_refused(fresh, spec):
    """A mistyped fault must fail loudly rather than silently never fire."""
    bb = fresh
    response = bb.request('POST', bb.base_url + '/_emulator/faults', json=spec)
    assert response.status_code == 400
    assert bb.get('/repositories/acme/docs').status_code == 200


def test_faults_are_consumed_in_order(fresh):
    bb = fresh
    bb.emu.fault(path_prefix='/2.0/repositories', status=429, count=1)
    bb.emu.fault(path_prefix='/2.0/repositories', status=503, count=1)
    assert bb.get('/repositories/acme/docs').status_code == 429
    assert bb.get('/repositories/acme/docs').status_code == 503
    assert bb.get('/repositories/acme/docs').status_code == 200


def test_after_lets_matching_requests_through_first(fresh):
    bb = fresh
    bb.emu.fault(path_prefix='/2.0/repositories', status=503, count=2, after=2)
    bb.emu.fault(path_prefix='/2.0/repositories', status=429, count=1)
    bb.emu.fault(path_prefix='/2.0/user', status=500, after=0)
    assert bb.get('/user').status_code == 500  # after 0 is the default: at once
    seen = [bb.get('/repositories/acme/docs').status_code for dummy in range(6)]
    # The waiting fault stays first in line: the one queued behind it never jumps ahead.
    assert seen == [200, 200, 503, 503, 429, 200]
    assert bb.emu.stats()['requests']['api'] == 7


def test_body_base64_answers_bytes(fresh):
    bb = fresh
    payload = b'\x1f\x8b\x00\xffnot text'
    bb.emu.fault(path_prefix='/acme/api/get/', status=200, body_base64=base64.b64encode(payload).decode(),
                 headers={'Content-Type': 'application/x-gzip'})
    response = bb.web('/acme/api/get/main.tar.gz')
    assert response.status_code == 200 and response.content == payload
    assert response.headers['Content-Type'] == 'application/x-gzip'


@pytest.mark.parametrize('spec', [
    {'path_prefix': '/x', 'status': 200, 'body_base64': 'not base64!'},
    {'path_prefix': '/x', 'drop': True, 'body_base64': 'AA=='},
    {'path_prefix': '/x', 'status': 200, 'body': 'text', 'body_base64': 'AA=='},
    {'path_prefix': '/x', 'status': 500, 'after': -1},
    {'path_prefix': '/x', 'status': 500, 'after': '2'},
], ids=['not-base64', 'without-status', 'with-body', 'negative-after', 'text-after'])
def test_bad_after_or_body_base64_is_refused(fresh, spec):
    response = fresh.request('POST', fresh.base_url + '/_emulator/faults', json=spec)
    assert response.status_code == 400, response.text
    assert fresh.emu.control('faults', {'clear': True}) == {'faults': []}


# ---------------------------------------------------------------- stats and reset

def test_stats_shape_after_reset(fresh):
    stats = fresh.emu.stats()
    assert set(stats) >= {'requests', 'tokens'}
    assert stats['requests'] == ZERO
    assert isinstance(stats['tokens'], list)


def test_stats_endpoint_over_http(fresh):
    bb = fresh
    response = bb.get(bb.base_url + '/_emulator/stats')
    assert response.status_code == 200
    assert response.json()['requests'] == ZERO


def test_stats_count_exactly(fresh, tmp_path):
    bb = fresh
    tokens = [bb.alice_token() for dummy in range(3)]
    assert counters(bb) == {'token': 3, 'api': 0, 'git': 0, 'archive': 0}
    # The stats list every access token issued so far.
    issued = fresh.emu.stats()['tokens']
    assert all(token in issued for token in tokens)

    for dummy in range(2):
        assert bb.get('/repositories/acme/api', headers=bb.bearer(tokens[0])).status_code == 200
    assert counters(bb) == {'token': 3, 'api': 2, 'git': 0, 'archive': 0}

    assert bb.web('/acme/api/get/main.zip', headers=bb.bearer(tokens[1])).status_code == 200
    assert counters(bb) == {'token': 3, 'api': 2, 'git': 0, 'archive': 1}

    bb.clone(bb.clone_url('acme', 'docs'), tmp_path / 'docs')
    after_clone = counters(bb)
    assert after_clone['git'] >= 2
    assert {key: after_clone[key] for key in ('token', 'api', 'archive')} == {'token': 3, 'api': 2, 'archive': 1}


def test_failed_requests_are_counted_too(fresh):
    bb = fresh
    assert bb.token_request({'grant_type': 'client_credentials'}, auth=('nobody', 'nothing')).status_code == 400
    assert bb.get('/repositories/acme/api').status_code == 404
    assert counters(bb) == {'token': 1, 'api': 1, 'git': 0, 'archive': 0}


def test_reset_zeroes(fresh, tmp_path):
    bb = fresh
    token = bb.alice_token()
    bb.get('/repositories/acme/docs')
    bb.web('/acme/docs/get/master.zip')
    bb.ls_remote(bb.clone_url('acme', 'docs'))
    after = counters(bb)
    assert (after['token'], after['api'], after['archive']) == (1, 1, 1)
    assert after['git'] >= 1
    bb.emu.reset()
    assert counters(bb) == ZERO
    # Reading the stats is not counted, and tokens stay valid across a reset.
    assert counters(bb) == ZERO
    assert bb.get('/repositories/acme/api', headers=bb.bearer(token)).status_code == 200
    assert counters(bb) == {'token': 0, 'api': 1, 'git': 0, 'archive': 0}


# ---------------------------------------------------------------- latency

def timed_get(bb, path, **kwargs):
    started = time.monotonic()
    response = bb.get(path, **kwargs)
    assert response.status_code == 200
    return time.monotonic() - started


def test_latency_control(fresh):
    bb = fresh
    try:
        bb.emu.latency(600)
        assert timed_get(bb, '/repositories/acme/docs') >= 0.6
        assert timed_get(bb, '/repositories/acme/docs') >= 0.6
    finally:
        bb.emu.latency(0)
    assert min(timed_get(bb, '/repositories/acme/docs') for dummy in range(3)) < 0.5


def test_latency_option(make_emulator, bitbucket_for):
    bb = bitbucket_for(make_emulator(latency_ms=500))
    assert timed_get(bb, '/repositories/acme/docs') >= 0.5


# ---------------------------------------------------------------- concurrency

def test_parallel_token_requests(fresh):
    bb = fresh

    def mint(index):
        response = bb.token_request({'grant_type': 'client_credentials'}, auth=bb.ALICE_CONSUMER)
        return response.status_code, response.json().get('access_token')

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(mint, range(50)))
    assert [status for status, token in results] == [200] * 50
    assert len({token for status, token in results}) == 50
    assert counters(bb) == {'token': 50, 'api': 0, 'git': 0, 'archive': 0}
    for status, token in results[:5]:
        assert bb.get('/repositories/acme/api', headers=bb.bearer(token)).status_code == 200
