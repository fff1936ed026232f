"""OAuth 2.0 against Bitbucket Data Center, through real ansible-playbook runs and the DC emulator.

The authorize playbook with PKCE S256 end to end (the test plays the browser), refresh tokens that
rotate through the token cache, the lookup, and client_credentials refused before any request.
Every test greps the output for every token the emulator ever issued and for the client secret.
"""

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import time

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from test_authorize import Reader, deliver, finish

# The DC emulator's incoming application link (bitbucket_emulator/data/datacenter.yml).
APP = {'client_id': 'dc-client-0123456789abcdef', 'client_secret': 'dc-secret+With/Odd=Chars0123456789',
       'redirect_uri': 'http://127.0.0.1:8977/callback'}
DC_URL_PATTERN = re.compile(r'(https://[^\s"]+/rest/oauth2/latest/authorize\?[^\s"]+)')
UNRESERVED_RUN = re.compile(r'[A-Za-z0-9._~-]{43,}')


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode('ascii')).digest()).decode('ascii').rstrip('=')


def assert_verifier_not_in(text, challenge, length=64):
    """No string of the verifier's length in text hashes to the challenge: the verifier never showed."""
    for run in UNRESERVED_RUN.findall(text):
        for start in range(0, len(run) - length + 1):
            assert s256(run[start:start + length]) != challenge, 'the PKCE code verifier leaked into the output'


def leaked_secrets(dc_emulator, *extra):
    return dc_emulator.stats()['tokens'] + [APP['client_secret']] + [value for value in extra if value]


def cache_entries(cache_dir):
    entries = []
    for name in sorted(os.listdir(cache_dir)):
        if name.endswith('.json'):
            with open(os.path.join(cache_dir, name), encoding='utf-8') as handle:
                entries.append(json.load(handle))
    return entries


def whoami(dc_emulator, token):
    """The user a token acts as, from Data Center's X-AUSERNAME header."""
    answer = requests.get(dc_emulator.api_url + '/projects', headers={'Authorization': 'Bearer ' + token},
                          verify=dc_emulator.ca_file, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers.get('X-AUSERNAME')


def authorize_by_hand(dc_emulator, verifier, user='alice'):
    """The browser step without the playbook: an authorization code bound to verifier's S256 challenge."""
    answer = requests.get(dc_emulator.authorize_url, params={
        'client_id': APP['client_id'], 'response_type': 'code', 'redirect_uri': APP['redirect_uri'], 'scope': 'REPO_READ',
        'state': 'st-123', 'code_challenge': s256(verifier), 'code_challenge_method': 'S256', 'emulator_user': user},
        verify=dc_emulator.ca_file, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers['Location']).query)
    assert query['state'] == ['st-123']
    return query['code'][0]


def dc_vars(dc_emulator, cache_dir, **extra):
    data = {'client_id': APP['client_id'], 'client_secret': APP['client_secret'], 'api_url': dc_emulator.api_url,
            'ca_path': dc_emulator.ca_file, 'cache_dir': str(cache_dir)}
    data.update(extra)
    return data


def dc_token_task(no_log=True, **options):
    # No token_url: on Data Center it is derived from api_url.
    args = {'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'api_url': '{{ api_url }}',
            'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}'}
    args.update(options)
    return [{'name': 'Get a Data Center token', 'codeferry.bitbucket.oauth_token': args, 'register': 'token',
             'no_log': no_log}]


VERIFIER = 'pkce-Verifier_0123456789.abcdefghijklmnopqrstuvwxyz~ABCDEFGHIJKL'


# ---------------------------------------------------------------------------------------------
# playbooks/authorize.yml with PKCE S256


def start_dc_authorize(playbook, dc_emulator, cache_dir, **overrides):
    extra = {
        'bitbucket_api_url': dc_emulator.api_url,
        'bitbucket_ca_path': dc_emulator.ca_file,
        'bitbucket_token_cache_dir': cache_dir,
        'bitbucket_authorize_timeout': 60,
        'bitbucket_redirect_uri': APP['redirect_uri'],
    }
    extra.update(('bitbucket_' + name, value) for name, value in overrides.items())
    argv = playbook.command('codeferry.bitbucket.authorize', verbosity=4, extra_args=['-e', json.dumps(extra)])
    env = {'BITBUCKET_CLIENT_ID': APP['client_id'], 'BITBUCKET_CLIENT_SECRET': APP['client_secret']}
    proc = subprocess.Popen(argv, env=playbook.env(env), cwd=playbook.workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    reader = Reader(proc.stdout)
    reader.start()
    return proc, reader


def browse(dc_emulator, url):
    """The browser: the emulator approves as alice and redirects to the callback; returns (query, location)."""
    approve = requests.get(url, verify=dc_emulator.ca_file, allow_redirects=False, timeout=10)
    assert approve.status_code == 302, approve.text
    location = approve.headers['Location']
    assert location.startswith(APP['redirect_uri'] + '?'), location
    return parse_qs(urlsplit(location).query), location


@pytest.mark.parametrize('how', ['api_url', 'authorize_and_token_url'])
def test_authorize_playbook_with_pkce_against_data_center(dc_emulator, playbook, tmp_path, assert_no_secrets, how):
    cache_dir = str(tmp_path / 'token-cache')
    dc_emulator.reset()
    overrides = {}
    if how == 'authorize_and_token_url':
        overrides = {'api_url': '', 'authorize_url': dc_emulator.authorize_url, 'token_url': dc_emulator.token_url,
                     'scope': 'REPO_READ PUBLIC_REPOS'}
    proc, reader = start_dc_authorize(playbook, dc_emulator, cache_dir, **overrides)
    try:
        url = reader.wait_for(DC_URL_PATTERN, timeout=60)
        parts = urlsplit(url)
        assert '%s://%s%s' % (parts.scheme, parts.netloc, parts.path) == dc_emulator.authorize_url
        query = parse_qs(parts.query)
        assert query['client_id'] == [APP['client_id']] and query['response_type'] == ['code']
        assert query['redirect_uri'] == [APP['redirect_uri']]
        assert query['scope'] == [overrides.get('scope', 'REPO_READ')]
        assert query['code_challenge_method'] == ['S256']
        challenge, = query['code_challenge']
        # base64url of a SHA-256 digest, unpadded.
        assert re.fullmatch(r'[A-Za-z0-9_-]{43}', challenge) and len(base64.urlsafe_b64decode(challenge + '=')) == 32
        state, = query['state']
        assert len(state) == 32

        redirect, location = browse(dc_emulator, url)
        assert redirect['state'] == [state]
        code, = redirect['code']
        page = deliver(location)
        assert page.status_code == 200 and 'Access granted' in page.text
    finally:
        rc, output = finish(proc, reader)
    assert rc == 0, output[-4000:]
    assert 'Authorized. Scopes: %s' % ', '.join(overrides.get('scope', 'REPO_READ').split()) in output
    assert 'The refresh token is in the token cache' in output
    # One exchange, which the emulator accepted only with the verifier of that challenge.
    assert dc_emulator.stats()['requests']['token'] == 1
    assert_no_secrets(output, leaked_secrets(dc_emulator, code))
    assert_verifier_not_in(output, challenge)

    entry, = cache_entries(cache_dir)
    assert entry['token_url'] == dc_emulator.token_url and entry['grant_type'] == 'authorization_code'
    assert entry['scopes'] == overrides.get('scope', 'REPO_READ').split()
    assert whoami(dc_emulator, entry['access_token']) == 'alice'
    # The code was bound to the challenge and is spent: a replay with any verifier is refused.
    replay = requests.post(dc_emulator.token_url, data={
        'grant_type': 'authorization_code', 'code': code, 'redirect_uri': APP['redirect_uri'], 'code_verifier': VERIFIER,
        'client_id': APP['client_id'], 'client_secret': APP['client_secret']}, verify=dc_emulator.ca_file, timeout=10)
    assert replay.status_code == 400

    # A later run refreshes from the cache without a browser.
    dc_emulator.reset()
    later = playbook.run(dc_token_task(grant_type='refresh_token', min_ttl=3600), save=['token'],
                         play_vars=dc_vars(dc_emulator, cache_dir), verbosity=4)
    assert later.rc == 0, later
    assert later.results['token']['changed'] is True and dc_emulator.stats()['requests']['token'] == 1
    assert whoami(dc_emulator, later.results['token']['access_token']) == 'alice'
    assert_no_secrets(later.output, leaked_secrets(dc_emulator, code))


def test_authorize_playbook_cloud_url_is_unchanged_without_data_center_settings(playbook, tmp_path):
    # With no Data Center setting, the URL shown is Cloud's, with neither PKCE nor redirect_uri, as before.
    # Nobody answers it: the listener gives up after a second.
    argv = playbook.command('codeferry.bitbucket.authorize', extra_args=['-e', json.dumps({
        'bitbucket_authorize_timeout': 1, 'bitbucket_redirect_uri': 'http://127.0.0.1:%d/' % free_port(),
        'bitbucket_token_cache_dir': str(tmp_path / 'cache')})])
    env = {'BITBUCKET_CLIENT_ID': 'someKey0123', 'BITBUCKET_CLIENT_SECRET': 'someSecret0123'}
    proc = subprocess.run(argv, env=playbook.env(env), cwd=playbook.workdir, capture_output=True, text=True, timeout=180,
                          check=False)
    url = re.search(r'(https://bitbucket\.org/site/oauth2/authorize\?[^\s"]+)', proc.stdout)
    assert url, proc.stdout[-4000:]
    assert parse_qs(urlsplit(url.group(1)).query).keys() == {'client_id', 'response_type', 'state'}


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Refresh tokens that rotate, through the cache


def test_refresh_rotates_through_the_cache(dc_emulator, playbook, tmp_path, assert_no_secrets):
    cache_dir = tmp_path / 'cache'
    dc_emulator.reset()
    code = authorize_by_hand(dc_emulator, VERIFIER)
    outputs = []

    first = playbook.run(dc_token_task(grant_type='authorization_code', code='{{ code }}', code_verifier='{{ verifier }}',
                                       redirect_uri='{{ redirect_uri }}'), save=['token'],
                         play_vars=dc_vars(dc_emulator, cache_dir, code=code, verifier=VERIFIER,
                                           redirect_uri=APP['redirect_uri']), verbosity=4)
    outputs.append(first.output)
    assert first.rc == 0, first
    token = first.results['token']
    assert token['changed'] is True and token['scopes'] == ['REPO_READ'] and 3500 < token['expires_in'] <= 3600
    refresh_1 = token['refresh_token']

    # Second run: from the cache, no request.
    dc_emulator.reset()
    second = playbook.run(dc_token_task(grant_type='refresh_token'), save=['token'], play_vars=dc_vars(dc_emulator, cache_dir),
                          verbosity=4)
    outputs.append(second.output)
    assert second.rc == 0, second
    assert second.results['token']['from_cache'] is True and second.results['token']['changed'] is False
    assert second.results['token']['access_token'] == token['access_token']
    assert dc_emulator.stats()['requests']['token'] == 0

    # Renewal: the cached refresh token is spent and its successor stored before the task returns.
    third = playbook.run(dc_token_task(grant_type='refresh_token', min_ttl=3600), save=['token'],
                         play_vars=dc_vars(dc_emulator, cache_dir), verbosity=4)
    outputs.append(third.output)
    assert third.rc == 0, third
    refresh_2 = third.results['token']['refresh_token']
    assert refresh_2 != refresh_1 and dc_emulator.stats()['requests']['token'] == 1
    entry, = cache_entries(cache_dir)
    assert entry['refresh_token'] == refresh_2 and entry['access_token'] == third.results['token']['access_token']
    spent = requests.post(dc_emulator.token_url, data={'grant_type': 'refresh_token', 'refresh_token': refresh_1,
                                                       'client_id': APP['client_id'], 'client_secret': APP['client_secret']},
                          verify=dc_emulator.ca_file, timeout=10)
    assert spent.status_code == 400  # rotation is real: the first refresh token works no more

    # And again: it works only because the rotated token was kept.
    fourth = playbook.run(dc_token_task(grant_type='refresh_token', min_ttl=3600), save=['token'],
                          play_vars=dc_vars(dc_emulator, cache_dir), verbosity=4)
    outputs.append(fourth.output)
    assert fourth.rc == 0, fourth
    assert fourth.results['token']['refresh_token'] not in (refresh_1, refresh_2)
    assert whoami(dc_emulator, fourth.results['token']['access_token']) == 'alice'
    for output in outputs:
        assert_no_secrets(output, leaked_secrets(dc_emulator, code, VERIFIER))
    for name in os.listdir(cache_dir):
        assert_no_secrets(name, leaked_secrets(dc_emulator, APP['client_id']))


def test_lookup_on_data_center(dc_emulator, playbook, tmp_path, assert_no_secrets):
    cache_dir = tmp_path / 'cache'
    dc_emulator.reset()
    code = authorize_by_hand(dc_emulator, VERIFIER)
    common = "api_url=api_url, ca_path=ca_path, cache_dir=cache_dir"
    exchange_lookup = ("{{ lookup('codeferry.bitbucket.oauth_token', grant_type='authorization_code', code=code, "
                       "code_verifier=verifier, redirect_uri=redirect_uri, %s) }}" % common)
    refresh_lookup = "{{ lookup('codeferry.bitbucket.oauth_token', grant_type='refresh_token', min_ttl=3600, %s) }}" % common

    def tasks(expression):
        return [{'name': 'A Data Center token from the lookup', 'no_log': True,
                 'ansible.builtin.set_fact': {'looked_up': expression}}]
    # Client id and secret from the environment, as the lookup documents.
    env = {'BITBUCKET_CLIENT_ID': APP['client_id'], 'BITBUCKET_CLIENT_SECRET': APP['client_secret']}
    variables = dc_vars(dc_emulator, cache_dir, redirect_uri=APP['redirect_uri'], code=code, verifier=VERIFIER)
    exchange = playbook.run(tasks(exchange_lookup), save=['looked_up'], env=env, verbosity=4, play_vars=variables)
    assert exchange.rc == 0, exchange
    first = exchange.results['looked_up']
    assert whoami(dc_emulator, first) == 'alice'
    # Renewed through the cache's refresh token by the lookup, which stored the rotated one.
    renewal = playbook.run(tasks(refresh_lookup), save=['looked_up'], env=env, verbosity=4, play_vars=variables)
    assert renewal.rc == 0, renewal
    assert renewal.results['looked_up'] != first and whoami(dc_emulator, renewal.results['looked_up']) == 'alice'
    assert dc_emulator.stats()['requests']['token'] == 2
    entry, = cache_entries(cache_dir)
    assert entry['access_token'] == renewal.results['looked_up']
    for output in (exchange.output, renewal.output):
        assert_no_secrets(output, leaked_secrets(dc_emulator, code, VERIFIER))


# ---------------------------------------------------------------------------------------------
# client_credentials: refused before any request


REFUSAL = 'Bitbucket Data Center has no client_credentials grant'


def assert_refusal(output):
    assert REFUSAL in output, output[-4000:]
    assert 'HTTP access token' in output and 'BITBUCKET_ACCESS_TOKEN' in output
    assert 'codeferry.bitbucket.authorize playbook' in output and 'grant_type refresh_token' in output
    assert 'Traceback' not in output


def test_client_credentials_is_refused_without_a_request(dc_emulator, playbook, tmp_path, assert_no_secrets):
    dc_emulator.reset()
    cache_dir = tmp_path / 'cache'
    module = playbook.run(dc_token_task(no_log=False), play_vars=dc_vars(dc_emulator, cache_dir), verbosity=4)
    assert module.rc != 0
    assert_refusal(module.output)
    assert 'no token was requested from %s' % dc_emulator.token_url in module.output

    lookup = playbook.run("""
        - name: The consumer's token through the lookup
          ansible.builtin.debug:
            msg: "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=client_secret,
                     api_url=api_url, ca_path=ca_path, cache_dir=cache_dir) }}"
        """, play_vars=dc_vars(dc_emulator, cache_dir))
    assert lookup.rc != 0
    assert_refusal(lookup.output)

    # The API modules' client_id + client_secret authentication: refused before the token and the API request.
    api = playbook.run("""
        - name: List repositories with the client credentials
          codeferry.bitbucket.repository_info:
            workspace: OPS
            client_id: "{{ client_id }}"
            client_secret: "{{ client_secret }}"
            api_url: "{{ api_url }}"
            ca_path: "{{ ca_path }}"
            cache_dir: "{{ cache_dir }}"
        """, play_vars=dc_vars(dc_emulator, cache_dir), verbosity=4)
    assert api.rc != 0
    assert_refusal(api.output)

    stats = dc_emulator.stats()
    assert stats['requests']['token'] == 0 and stats['requests']['api'] == 0
    assert not cache_dir.exists() or not cache_entries(cache_dir)
    for run in (module, lookup, api):
        assert_no_secrets(run.output, leaked_secrets(dc_emulator))


# ---------------------------------------------------------------------------------------------
# Rate limiting


def test_a_rate_limited_refresh_waits_for_retry_after(dc_emulator, playbook, tmp_path, assert_no_secrets):
    code = authorize_by_hand(dc_emulator, VERIFIER)
    exchanged = requests.post(dc_emulator.token_url, data={
        'grant_type': 'authorization_code', 'code': code, 'redirect_uri': APP['redirect_uri'], 'code_verifier': VERIFIER,
        'client_id': APP['client_id'], 'client_secret': APP['client_secret']}, verify=dc_emulator.ca_file, timeout=10)
    assert exchanged.status_code == 200, exchanged.text
    refresh = exchanged.json()['refresh_token']
    dc_emulator.reset()
    # Data Center's rate limiter answers 429 with Retry-After; the backoff alone would wait under a second.
    dc_emulator.fault(path_prefix='/rest/oauth2/latest/token', status=429, headers={'Retry-After': '5'})
    started = time.monotonic()
    run = playbook.run(dc_token_task(grant_type='refresh_token', refresh_token='{{ refresh }}', cache=False), save=['token'],
                       play_vars=dc_vars(dc_emulator, tmp_path / 'cache', refresh=refresh), verbosity=3)
    elapsed = time.monotonic() - started
    assert run.rc == 0, run
    assert dc_emulator.stats()['requests']['token'] == 2
    assert elapsed >= 5, elapsed
    assert whoami(dc_emulator, run.results['token']['access_token']) == 'alice'
    assert_no_secrets(run.output, leaked_secrets(dc_emulator, code, VERIFIER))
