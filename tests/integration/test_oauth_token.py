"""codeferry.bitbucket.oauth_token (module and lookup) through real ansible-playbook runs.

Each test asserts what the emulator saw (its request counters and issued tokens), not only what
the module said.
"""

import json
import os
import stat

import pytest
import requests

CONSUMER = {'key': 'demoKey1234567890ab', 'secret': 'demoSecret+With/Odd=Chars0123456789'}


def token_task(no_log=True, **options):
    """One oauth_token task registered as `token`, with the connection options from play_vars().

    Tests that read a failure message or a warning pass no_log=False: before ansible-core 2.19,
    no_log hides those too.
    """
    args = {'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'token_url': '{{ token_url }}',
            'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}'}
    args.update(options)
    return [{'name': 'Get a token', 'codeferry.bitbucket.oauth_token': args, 'register': 'token', 'no_log': no_log}]


TOKEN_TASK = token_task()


def play_vars(emulator, cache_dir, **extra):
    data = {'client_id': CONSUMER['key'], 'client_secret': CONSUMER['secret'], 'token_url': emulator.token_url,
            'ca_path': emulator.ca_file, 'cache_dir': str(cache_dir), 'api_url': emulator.api_url}
    data.update(extra)
    return data


def cache_files(cache_dir):
    return sorted(name for name in os.listdir(cache_dir) if name.endswith('.json'))


def api_user(emulator, token):
    return requests.get(emulator.api_url + '/user', headers={'Authorization': 'Bearer ' + token},
                        verify=emulator.ca_file, timeout=10)


@pytest.mark.parametrize('mode', ['current', 'legacy'])
def test_second_run_reuses_the_cached_token(mode, emulator, legacy_emulator, playbook, tmp_path, assert_no_secrets):
    emu = emulator if mode == 'current' else legacy_emulator
    cache_dir = tmp_path / 'cache'
    emu.reset()
    first = playbook.run(TOKEN_TASK, save=['token'], play_vars=play_vars(emu, cache_dir), verbosity=4)
    assert first.rc == 0, first
    token = first.results['token']
    assert token['changed'] is True and token['from_cache'] is False
    assert token['token_type'] == 'bearer'
    assert token['scopes'] == ['repository', 'account']
    assert 7100 < token['expires_in'] <= 7200
    assert token['expires_at'].endswith('Z') and 'T' in token['expires_at']
    assert api_user(emu, token['access_token']).status_code == 200
    if mode == 'current':
        assert 'refresh_token' not in token or not token['refresh_token']
    else:
        assert token['refresh_token'] in emu.stats()['tokens']

    second = playbook.run(TOKEN_TASK, save=['token'], play_vars=play_vars(emu, cache_dir), verbosity=4)
    assert second.rc == 0, second
    again = second.results['token']
    assert again['changed'] is False and again['from_cache'] is True
    assert again['access_token'] == token['access_token']
    assert emu.stats()['requests']['token'] == 1, 'the second run must not call the token endpoint'

    issued = emu.stats()['tokens']
    for run in (first, second):
        assert_no_secrets(run.output, issued + [CONSUMER['secret']])
    for name in os.listdir(cache_dir):
        assert_no_secrets(name, issued + [CONSUMER['secret'], CONSUMER['key']])


def test_cache_file_and_directory_modes(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    run = playbook.run(TOKEN_TASK, save=['token'], play_vars=play_vars(emulator, cache_dir))
    assert run.rc == 0, run
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    names = cache_files(cache_dir)
    assert len(names) == 1
    assert stat.S_IMODE(os.stat(cache_dir / names[0]).st_mode) == 0o600
    with open(cache_dir / names[0], encoding='utf-8') as handle:
        cached = json.load(handle)
    assert cached['access_token'] == run.results['token']['access_token']
    assert CONSUMER['secret'] not in json.dumps(cached)


def test_min_ttl_forces_a_new_token(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    assert playbook.run(TOKEN_TASK, play_vars=play_vars(emulator, cache_dir)).rc == 0
    emulator.reset()
    task = token_task(min_ttl=7200)
    run = playbook.run(task, save=['token'], play_vars=play_vars(emulator, cache_dir))
    assert run.rc == 0, run
    assert run.results['token']['changed'] is True
    assert emulator.stats()['requests']['token'] == 1


def test_cache_disabled_mints_every_time(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    task = token_task(cache=False)
    emulator.reset()
    for dummy in range(2):
        run = playbook.run(task, save=['token'], play_vars=play_vars(emulator, cache_dir))
        assert run.rc == 0, run
        assert run.results['token']['changed'] is True
    assert emulator.stats()['requests']['token'] == 2
    assert not os.path.exists(cache_dir) or not cache_files(cache_dir)


def test_check_mode_mints_and_caches_like_a_normal_run(emulator, playbook, tmp_path):
    # Minting changes nothing on Bitbucket, and later tasks of the check run need the token.
    cache_dir = tmp_path / 'cache'
    emulator.reset()
    run = playbook.run(TOKEN_TASK, save=['token'], play_vars=play_vars(emulator, cache_dir), check=True)
    assert run.rc == 0, run
    token = run.results['token']
    assert token['changed'] is True and token['from_cache'] is False
    assert api_user(emulator, token['access_token']).status_code == 200
    assert emulator.stats()['requests']['token'] == 1
    assert len(cache_files(cache_dir)) == 1

    emulator.reset()
    run = playbook.run(TOKEN_TASK, save=['token'], play_vars=play_vars(emulator, cache_dir), check=True)
    assert run.rc == 0, run
    assert run.results['token']['changed'] is False and run.results['token']['from_cache'] is True
    assert run.results['token']['access_token']
    assert emulator.stats()['requests']['token'] == 0


def test_fifty_forks_cause_exactly_one_token_request(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    emulator.reset()
    hosts = ['host%02d' % number for number in range(50)]
    run = playbook.run(TOKEN_TASK, save=['token'], play_vars=play_vars(emulator, cache_dir), hosts=hosts, forks=50, timeout=600)
    assert run.rc == 0, run
    assert emulator.stats()['requests']['token'] == 1
    tokens = {result['access_token'] for result in run.results_by_host('token').values()}
    assert len(tokens) == 1
    changed = [host for host, result in run.results_by_host('token').items() if result['changed']]
    assert len(changed) == 1, changed


@pytest.mark.parametrize('mode', ['current', 'legacy'])
def test_refresh_token_rotation_across_runs(mode, emulator, legacy_emulator, playbook, tmp_path):
    """A refresh_token grant: every rotated refresh token is saved, and the next run uses it."""
    emu = emulator if mode == 'current' else legacy_emulator
    cache_dir = tmp_path / 'cache'
    # A refresh token to start from: the authorization-code grant (alice approves in the "browser").
    approve = requests.get(emu.base_url + '/site/oauth2/authorize', params={
        'client_id': CONSUMER['key'], 'response_type': 'code', 'emulator_user': 'alice'},
        verify=emu.ca_file, allow_redirects=False, timeout=10)
    code = approve.headers['Location'].split('code=')[1].split('&')[0]
    task = token_task(grant_type='authorization_code', code='{{ code }}')
    run = playbook.run(task, save=['token'], play_vars=play_vars(emu, cache_dir, code=code))
    assert run.rc == 0, run
    refresh_tokens = [run.results['token']['refresh_token']]

    # Later runs ask for the user's token: the refresh token comes from the user's cache entry.
    renew = token_task(grant_type='refresh_token', min_ttl=7200)
    for dummy in range(3):
        run = playbook.run(renew, save=['token'], play_vars=play_vars(emu, cache_dir))
        assert run.rc == 0, run
        token = run.results['token']
        assert token['changed'] is True
        assert api_user(emu, token['access_token']).json()['username'] == 'alice'
        refresh_tokens.append(token['refresh_token'])
        with open(cache_dir / cache_files(cache_dir)[0], encoding='utf-8') as handle:
            assert json.load(handle)['refresh_token'] == token['refresh_token']
    if mode == 'current':
        assert len(set(refresh_tokens)) == 4, 'each refresh must rotate the refresh token'
    else:
        assert len(set(refresh_tokens)) == 1, 'legacy refresh tokens are stable'


def test_explicit_refresh_token_grant(emulator, playbook, tmp_path):
    approve = requests.get(emulator.base_url + '/site/oauth2/authorize', params={
        'client_id': CONSUMER['key'], 'response_type': 'code', 'emulator_user': 'alice'},
        verify=emulator.ca_file, allow_redirects=False, timeout=10)
    code = approve.headers['Location'].split('code=')[1].split('&')[0]
    minted = requests.post(emulator.token_url, auth=(CONSUMER['key'], CONSUMER['secret']),
                           data={'grant_type': 'authorization_code', 'code': code}, verify=emulator.ca_file, timeout=10).json()
    task = token_task(grant_type='refresh_token', refresh_token='{{ refresh }}', cache=False)
    run = playbook.run(task, save=['token'], play_vars=play_vars(emulator, tmp_path, refresh=minted['refresh_token']), verbosity=4)
    assert run.rc == 0, run
    assert run.results['token']['refresh_token'] != minted['refresh_token']
    assert minted['refresh_token'] not in run.output

    # The used refresh token is dead now (rotation); the module says so without echoing it.
    task = token_task(no_log=False, grant_type='refresh_token', refresh_token='{{ refresh }}', cache=False)
    run = playbook.run(task, save=['token'], play_vars=play_vars(emulator, tmp_path, refresh=minted['refresh_token']), verbosity=4)
    assert run.rc != 0
    assert 'invalid_request' in run.output and 'Invalid refresh_token' in run.output
    assert minted['refresh_token'] not in run.output
    assert 'Traceback' not in run.output


def test_rejected_cached_refresh_token_falls_back_to_client_credentials(legacy_emulator, playbook, tmp_path):
    emu = legacy_emulator
    cache_dir = tmp_path / 'cache'
    assert playbook.run(TOKEN_TASK, play_vars=play_vars(emu, cache_dir)).rc == 0
    path = cache_dir / cache_files(cache_dir)[0]
    with open(path, encoding='utf-8') as handle:
        cached = json.load(handle)
    cached['refresh_token'] = 'revoked-refresh-token'
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(cached, handle)
    emu.reset()
    renew = token_task(min_ttl=7200)
    run = playbook.run(renew, save=['token'], play_vars=play_vars(emu, cache_dir))
    assert run.rc == 0, run
    assert run.results['token']['changed'] is True
    assert emu.stats()['requests']['token'] == 2  # the rejected refresh, then client_credentials
    assert api_user(emu, run.results['token']['access_token']).status_code == 200


def test_corrupt_cache_file_is_replaced_with_a_warning(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    assert playbook.run(TOKEN_TASK, play_vars=play_vars(emulator, cache_dir)).rc == 0
    path = cache_dir / cache_files(cache_dir)[0]
    path.write_text('{"this is": not json')
    emulator.reset()
    run = playbook.run(token_task(no_log=False), save=['token'], play_vars=play_vars(emulator, cache_dir))
    assert run.rc == 0, run
    assert '[WARNING]' in run.output and 'ignoring the token cache file' in run.output
    assert emulator.stats()['requests']['token'] == 1
    with open(path, encoding='utf-8') as handle:
        assert json.load(handle)['access_token'] == run.results['token']['access_token']


@pytest.mark.parametrize('case, options, message', [
    ('wrong secret', {'client_secret': 'not-the-secret'}, 'Invalid OAuth client credentials'),
    ('no scheme', {'token_url': '127.0.0.1/site/oauth2/access_token'}, 'token_url'),
    ('bad grant', {'grant_type': 'password'}, 'grant_type'),
    ('code missing', {'grant_type': 'authorization_code'}, 'code'),
    ('negative min_ttl', {'min_ttl': -5}, 'min_ttl'),
    ('option typo', {'pagelen': 100}, 'pagelen'),
])
def test_bad_input_gives_a_clear_error(case, options, message, emulator, playbook, tmp_path, assert_no_secrets):
    tasks = token_task(**options)
    tasks[0].update(name=case, no_log=False)
    run = playbook.run(tasks, play_vars=play_vars(emulator, tmp_path / 'cache'), verbosity=4)
    assert run.rc != 0, run
    assert message in run.output
    assert 'Traceback' not in run.output
    assert_no_secrets(run.output, [CONSUMER['secret'], 'not-the-secret'])


def test_certificate_from_another_ca_is_refused(emulator, make_emulator, playbook, tmp_path):
    other = make_emulator()
    run = playbook.run(token_task(no_log=False), play_vars=play_vars(emulator, tmp_path / 'cache', ca_path=other.ca_file))
    assert run.rc != 0
    assert 'certificate' in run.output.lower()
    assert 'Traceback' not in run.output
    assert CONSUMER['secret'] not in run.output


def test_lookup_shares_the_cache_with_the_module(emulator, playbook, tmp_path, assert_no_secrets):
    cache_dir = tmp_path / 'cache'
    emulator.reset()
    tasks = TOKEN_TASK + [{'name': 'The same token through the lookup', 'no_log': True, 'ansible.builtin.set_fact': {
        'looked_up': "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=client_secret, "
                     "token_url=token_url, ca_path=ca_path, cache_dir=cache_dir) }}"}}]
    run = playbook.run(tasks, save=['token', 'looked_up'], play_vars=play_vars(emulator, cache_dir), verbosity=4)
    assert run.rc == 0, run
    assert run.results['looked_up'] == run.results['token']['access_token']
    assert emulator.stats()['requests']['token'] == 1
    assert_no_secrets(run.output, emulator.stats()['tokens'] + [CONSUMER['secret']])


def test_lookup_error_is_clear(emulator, playbook, tmp_path):
    tasks = """
- name: Lookup with a wrong secret
  ansible.builtin.debug:
    msg: "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=wrong_secret,
             token_url=token_url, ca_path=ca_path, cache_dir=cache_dir) }}"
"""
    # The message at the default verbosity; the secret at none. (Before ansible-core 2.19, Ansible
    # itself prints the traceback of any failed lookup at -vvv.)
    quiet, verbose = (playbook.run(tasks, play_vars=play_vars(emulator, tmp_path / 'cache', wrong_secret='wrong-secret'),
                                   verbosity=verbosity) for verbosity in (0, 4))
    assert quiet.rc != 0 and verbose.rc != 0
    assert 'Invalid OAuth client credentials' in quiet.output
    assert 'Traceback' not in quiet.output
    assert 'wrong-secret' not in quiet.output + verbose.output
