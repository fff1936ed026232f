"""Whose token a task gets, and how the cache recovers: real ansible-playbook runs against the emulator.

The consumer's own token (client_credentials) acts as its owner, alice; a user token from the
authorization-code grant below acts as bob, who approves. The emulator's /2.0/user says which
principal a token acts as, so the tests check identities, not only what the module reported.
"""

import json
import os
from urllib.parse import parse_qs, urlsplit

import requests

from test_oauth_token import CONSUMER, api_user, play_vars, token_task


def user_of(emulator, token):
    answer = api_user(emulator, token)
    assert answer.status_code == 200, answer.text
    return answer.json()['username']


def new_code(emulator, user='bob'):
    """An authorization code approved by user, as the browser step would deliver it."""
    answer = requests.get(emulator.base_url + '/site/oauth2/authorize',
                          params={'client_id': CONSUMER['key'], 'response_type': 'code', 'emulator_user': user},
                          verify=emulator.ca_file, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers['Location']).query)['code'][0]


def token(playbook, emulator, cache_dir, check=False, **options):
    run = playbook.run(token_task(no_log=False, **options), save=['token'], play_vars=play_vars(emulator, cache_dir),
                       check=check)
    return run, run.results.get('token') or {}


def test_code_is_exchanged_with_a_warm_consumer_cache_and_identities_stay_apart(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    dummy, consumer = token(playbook, emulator, cache_dir)
    assert consumer['changed'] is True and user_of(emulator, consumer['access_token']) == 'alice'

    emulator.reset()
    run, user = token(playbook, emulator, cache_dir, grant_type='authorization_code', code=new_code(emulator))
    assert run.rc == 0, run
    assert user['changed'] is True and user['from_cache'] is False
    assert emulator.stats()['requests']['token'] == 1, 'the code must be exchanged'
    assert user['grant_type'] == 'authorization_code' and user['refresh_token']
    assert user_of(emulator, user['access_token']) == 'bob'

    # The consumer's token is still the consumer's: the user token did not replace it.
    run, again = token(playbook, emulator, cache_dir)
    assert run.rc == 0, run
    assert again['from_cache'] is True and again['access_token'] == consumer['access_token']
    assert user_of(emulator, again['access_token']) == 'alice'

    # A later run acts as the user again, from the cached entry, with no refresh_token option.
    run, later = token(playbook, emulator, cache_dir, grant_type='refresh_token')
    assert run.rc == 0, run
    assert later['from_cache'] is True and later['access_token'] == user['access_token']

    # Renewing the user's token uses the cached refresh token and still acts as bob.
    emulator.reset()
    run, renewed = token(playbook, emulator, cache_dir, grant_type='refresh_token', force=True)
    assert run.rc == 0, run
    assert renewed['changed'] is True and renewed['access_token'] != user['access_token']
    assert renewed['grant_type'] == 'refresh_token' and emulator.stats()['requests']['token'] == 1
    assert user_of(emulator, renewed['access_token']) == 'bob'
    assert len([name for name in os.listdir(cache_dir) if name.endswith('.json')]) == 2


def test_two_users_of_one_consumer_keep_separate_entries(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    run, bob = token(playbook, emulator, cache_dir, grant_type='authorization_code', code=new_code(emulator, 'bob'),
                     cache_entry='bob')
    assert run.rc == 0, run
    run, alice = token(playbook, emulator, cache_dir, grant_type='authorization_code', code=new_code(emulator, 'alice'),
                       cache_entry='alice')
    assert run.rc == 0, run
    for entry, user in (('bob', 'bob'), ('alice', 'alice')):
        run, result = token(playbook, emulator, cache_dir, grant_type='refresh_token', cache_entry=entry)
        assert run.rc == 0, run
        assert result['from_cache'] is True and user_of(emulator, result['access_token']) == user

    # Authorizing again into an entry that holds a refresh token says that it replaced it.
    run, replaced = token(playbook, emulator, cache_dir, grant_type='authorization_code', code=new_code(emulator, 'alice'),
                          cache_entry='bob')
    assert run.rc == 0, run
    # Older ansible-core wraps warnings: compare with the white space folded.
    assert "replaced the refresh token of cache entry 'bob'" in ' '.join(run.output.split())


def test_cache_entry_is_refused_for_the_consumer_token(emulator, playbook, tmp_path):
    run, dummy = token(playbook, emulator, tmp_path / 'cache', cache_entry='bob')
    assert run.rc != 0
    assert 'cache_entry names the cache entry of a user token' in run.output


def test_refresh_grant_without_a_cached_refresh_token_says_what_to_do(emulator, playbook, tmp_path):
    run, dummy = token(playbook, emulator, tmp_path / 'cache', grant_type='refresh_token', cache_entry='nobody')
    assert run.rc != 0
    assert "cache entry 'nobody' holds none" in run.output and 'authorize' in run.output


def test_a_wrong_secret_is_not_hidden_by_a_cached_token(emulator, playbook, tmp_path, assert_no_secrets):
    cache_dir = tmp_path / 'cache'
    dummy, good = token(playbook, emulator, cache_dir)
    wrong = 'wrongSecret0123456789abcdef'
    variables = play_vars(emulator, cache_dir, client_secret=wrong)
    tasks = token_task(no_log=False) + [
        {'name': 'API module', 'codeferry.bitbucket.repository_info': {
            'workspace': 'acme', 'name': ['api'], 'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}',
            'token_url': '{{ token_url }}', 'api_url': '{{ api_url }}', 'ca_path': '{{ ca_path }}',
            'cache_dir': '{{ cache_dir }}'}, 'register': 'repos', 'ignore_errors': True},
        {'name': 'Lookup', 'ansible.builtin.set_fact': {
            'looked_up': "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=client_secret, "
                         "token_url=token_url, ca_path=ca_path, cache_dir=cache_dir) }}"},
         'ignore_errors': True, 'register': 'lookup'},
    ]
    tasks[0]['ignore_errors'] = True
    emulator.reset()
    run = playbook.run(tasks, save=['token', 'repos', 'lookup'], play_vars=variables)
    for name in ('token', 'repos', 'lookup'):
        assert run.results[name]['failed'] is True, name
        assert 'unauthorized_client' in run.results[name]['msg'], run.results[name]['msg']
    assert emulator.stats()['requests']['token'] == 3, 'each front end must ask Bitbucket'
    assert_no_secrets(run.output, [wrong, CONSUMER['secret'], good['access_token']])

    # The entry of the right secret is still there, untouched.
    run, again = token(playbook, emulator, cache_dir)
    assert again['from_cache'] is True and again['access_token'] == good['access_token']
    for name in os.listdir(cache_dir):
        with open(cache_dir / name, encoding='utf-8') as handle:
            text = handle.read()
        assert_no_secrets(text + name, [CONSUMER['secret'], wrong])


def test_a_revoked_cached_token_is_dropped_and_the_next_run_recovers(make_emulator, playbook, tmp_path):
    emu = make_emulator()
    cache_dir = tmp_path / 'cache'
    tasks = token_task() + [{'name': 'Refs', 'codeferry.bitbucket.ref_info': {
        'workspace': 'acme', 'repository': 'api', 'kind': 'branch', 'name': 'main',
        'access_token': '{{ token.access_token }}', 'api_url': '{{ api_url }}', 'ca_path': '{{ ca_path }}',
        'cache_dir': '{{ cache_dir }}'}, 'register': 'refs', 'ignore_errors': True}]
    first = playbook.run(tasks, save=['token', 'refs'], play_vars=play_vars(emu, cache_dir))
    assert first.rc == 0 and first.results['refs']['failed'] is False, first
    emu.expire()

    second = playbook.run(tasks, save=['token', 'refs'], play_vars=play_vars(emu, cache_dir))
    assert second.results['token']['from_cache'] is True
    message = second.results['refs']['msg']
    assert 'HTTP 401' in message and 'dropped from the token cache' in message, message

    emu.reset()
    third = playbook.run(tasks, save=['token', 'refs'], play_vars=play_vars(emu, cache_dir))
    assert third.rc == 0, third
    assert third.results['token']['changed'] is True and third.results['refs']['failed'] is False
    assert third.results['token']['access_token'] != first.results['token']['access_token']
    assert emu.stats()['requests']['token'] == 1


def test_force_mints_a_new_token(emulator, playbook, tmp_path):
    cache_dir = tmp_path / 'cache'
    dummy, first = token(playbook, emulator, cache_dir)
    emulator.reset()
    run, forced = token(playbook, emulator, cache_dir, force=True)
    assert run.rc == 0, run
    assert forced['changed'] is True and forced['from_cache'] is False
    assert forced['access_token'] != first['access_token'] and emulator.stats()['requests']['token'] == 1


def test_readme_example_works_in_check_mode_on_a_fresh_controller(emulator, playbook, tmp_path):
    tasks = token_task() + [{'name': 'Resolve main', 'codeferry.bitbucket.ref_info': {
        'access_token': '{{ token.access_token }}', 'workspace': 'acme', 'repository': 'api', 'kind': 'branch',
        'name': 'main', 'api_url': '{{ api_url }}', 'ca_path': '{{ ca_path }}'}, 'register': 'refs'}]
    run = playbook.run(tasks, save=['token', 'refs'], play_vars=play_vars(emulator, tmp_path / 'cache'), check=True,
                       extra_args=['--diff'])
    assert run.rc == 0, run
    assert run.results['token']['changed'] is True and len(run.results['refs']['refs'][0]['commit']) == 40


def test_lookup_refuses_a_misspelt_option(emulator, playbook, tmp_path):
    tasks = [{'name': 'Lookup', 'ansible.builtin.debug': {
        'msg': "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=client_secret, "
               "token_url=token_url, ca_path=ca_path, cache_dir=cache_dir, min_tl=7000) | length }}"}}]
    run = playbook.run(tasks, play_vars=play_vars(emulator, tmp_path / 'cache'))
    assert run.rc != 0
    assert 'unknown option min_tl' in run.output and 'min_ttl' in run.output


def test_module_defaults_for_the_group(emulator, playbook, tmp_path):
    defaults = {'group/codeferry.bitbucket.bitbucket': {
        'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'token_url': '{{ token_url }}',
        'api_url': '{{ api_url }}', 'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}', 'workspace': 'acme',
        'username': 'alice', 'validate_certs': True, 'timeout': 20}}
    tasks = [{'module_defaults': defaults, 'block': [
        {'name': 'Token', 'codeferry.bitbucket.oauth_token': {}, 'register': 'token', 'no_log': True},
        {'name': 'Repositories', 'codeferry.bitbucket.repository_info': {'name': ['api'], 'username': None},
         'register': 'repos'},
        {'name': 'Conflict', 'codeferry.bitbucket.ref_info': {
            'repository': 'api', 'access_token': '{{ token.access_token }}', 'username': None},
         'register': 'conflict', 'ignore_errors': True},
    ]}]
    run = playbook.run(tasks, save=['token', 'repos', 'conflict'], play_vars=play_vars(emulator, tmp_path / 'cache'))
    assert run.results['token']['access_token'], run
    assert run.results['repos']['repositories'][0]['slug'] == 'api', run
    message = run.results['conflict']['msg']
    assert 'access_token and client_id + client_secret are mutually exclusive' in message, message
    assert 'this task has access_token, client_id, client_secret' in message and 'module_defaults' in message
    assert json.dumps(run.results['conflict']).count(run.results['token']['access_token']) == 0
