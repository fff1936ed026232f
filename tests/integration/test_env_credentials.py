"""Credentials and URLs from the environment alone, as the AWX/AAP credential type injects them.

The environment is rendered from extensions/awx/ by tests/awx_credential.py: a blank input
arrives as an empty variable, which must count as unset. Tasks set no credential or URL option;
only ca_path (the emulator's CA) and cache_dir.
"""

from awx_credential import injected_env

CONSUMER = {'key': 'demoKey1234567890ab', 'secret': 'demoSecret+With/Odd=Chars0123456789'}
WORKSPACE_TOKEN = 'ATCTT3xFfGN0acme+workspace/token='

REPOSITORY_TASK = {'name': 'Repositories', 'register': 'repos',
                   'codeferry.bitbucket.repository_info': {'workspace': 'acme', 'name': ['api'], 'ca_path': '{{ ca_path }}',
                                                           'cache_dir': '{{ cache_dir }}'}}


def play_vars(emulator, tmp_path):
    return {'ca_path': emulator.ca_file, 'cache_dir': str(tmp_path / 'cache')}


def test_consumer_and_urls_from_the_environment_reach_modules_and_lookup(emulator, playbook, tmp_path, assert_no_secrets):
    env = injected_env({'client_id': CONSUMER['key'], 'client_secret': CONSUMER['secret'],
                        'api_url': emulator.api_url, 'token_url': emulator.token_url})
    assert env['BITBUCKET_ACCESS_TOKEN'] == ''  # blank input, injected empty
    tasks = [
        REPOSITORY_TASK,
        {'name': 'Token from the module', 'register': 'token', 'no_log': True,
         'codeferry.bitbucket.oauth_token': {'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}'}},
        {'name': 'Token from the lookup', 'no_log': True, 'ansible.builtin.set_fact': {
            'looked_up': "{{ lookup('codeferry.bitbucket.oauth_token', ca_path=ca_path, cache_dir=cache_dir) }}"}},
    ]
    emulator.reset()
    run = playbook.run(tasks, save=['repos', 'token', 'looked_up'], env=env, play_vars=play_vars(emulator, tmp_path), verbosity=3)
    assert run.rc == 0, run
    assert [repo['full_name'] for repo in run.results['repos']['repositories']] == ['acme/api']
    # One token for the three tasks: all of them used the emulator's token URL and the same cache entry.
    assert run.results['looked_up'] == run.results['token']['access_token']
    assert run.results['token']['from_cache'] is True
    assert emulator.stats()['requests']['token'] == 1
    assert_no_secrets(run.output, emulator.stats()['tokens'] + [CONSUMER['secret']])


def test_access_token_with_blank_consumer_and_token_url(emulator, playbook, tmp_path, assert_no_secrets):
    env = injected_env({'access_token': WORKSPACE_TOKEN, 'api_url': emulator.api_url})
    assert env['BITBUCKET_CLIENT_ID'] == env['BITBUCKET_CLIENT_SECRET'] == env['BITBUCKET_TOKEN_URL'] == ''
    emulator.reset()
    run = playbook.run([REPOSITORY_TASK], save=['repos'], env=env, play_vars=play_vars(emulator, tmp_path), verbosity=3)
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['clone_url'].endswith('/acme/api.git')
    assert emulator.stats()['requests']['token'] == 0 and emulator.stats()['requests']['api'] >= 1
    assert_no_secrets(run.output, [WORKSPACE_TOKEN])


def test_an_option_in_the_task_wins_over_the_environment(emulator, playbook, tmp_path):
    # BITBUCKET_API_URL points nowhere: the task's api_url must be the one used.
    env = injected_env({'access_token': WORKSPACE_TOKEN, 'api_url': 'https://127.0.0.1:9/2.0'})
    task = dict(REPOSITORY_TASK, **{'codeferry.bitbucket.repository_info': dict(
        REPOSITORY_TASK['codeferry.bitbucket.repository_info'], api_url=emulator.api_url)})
    run = playbook.run([task], save=['repos'], env=env, play_vars=play_vars(emulator, tmp_path))
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['full_name'] == 'acme/api'
