"""codeferry.bitbucket.repository_info against the emulator: listing, filters, auth methods, retries, errors."""

import pytest
import requests

CONSUMER = {'key': 'demoKey1234567890ab', 'secret': 'demoSecret+With/Odd=Chars0123456789'}
WORKSPACE_TOKEN = 'ATCTT3xFfGN0acme+workspace/token='
APP_PASSWORD = 'alice-app-password-1'
API_TOKEN = 'ATATT3xFfGF0alice+api/token='
DEMO_REPOS = {'api', 'web', 'docs', 'infra'}


def base_args(**extra):
    args = {'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'token_url': '{{ token_url }}',
            'api_url': '{{ api_url }}', 'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}', 'workspace': 'acme'}
    args.update(extra)
    return {key: value for key, value in args.items() if value is not None}


def task(args, name='Repositories'):
    return [{'name': name, 'codeferry.bitbucket.repository_info': args, 'register': 'repos'}]


def play_vars(emulator, tmp_path, **extra):
    data = {'client_id': CONSUMER['key'], 'client_secret': CONSUMER['secret'], 'token_url': emulator.token_url,
            'api_url': emulator.api_url, 'ca_path': emulator.ca_file, 'cache_dir': str(tmp_path / 'cache')}
    data.update(extra)
    return data


def run_info(playbook, emulator, tmp_path, verbosity=0, check=False, **args):
    return playbook.run(task(base_args(**args)), save=['repos'], play_vars=play_vars(emulator, tmp_path),
                        verbosity=verbosity, check=check)


@pytest.mark.parametrize('mode', ['current', 'legacy'])
def test_lists_every_repository_with_few_requests(mode, emulator, legacy_emulator, demo_data, playbook, tmp_path, assert_no_secrets):
    emu = emulator if mode == 'current' else legacy_emulator
    emu.reset()
    run = run_info(playbook, emu, tmp_path, verbosity=4)
    assert run.rc == 0, run
    repos = run.results['repos']
    assert repos['changed'] is False
    slugs = [repo['slug'] for repo in repos['repositories']]
    generated = demo_data['workspaces'][0]['generate_repositories']['count']
    assert len(slugs) == len(set(slugs)) == len(DEMO_REPOS) + generated
    assert DEMO_REPOS <= set(slugs)
    # pagelen=100: 254 repositories are three pages, so three API requests and one token request.
    stats = emu.stats()['requests']
    assert stats['api'] == 3 and stats['token'] == 1
    assert_no_secrets(run.output, emu.stats()['tokens'] + [CONSUMER['secret']])


def test_repository_fields(emulator, playbook, tmp_path):
    run = run_info(playbook, emulator, tmp_path, name=['api'])
    assert run.rc == 0, run
    (repo,) = run.results['repos']['repositories']
    host = emulator.git_url.split('://', 1)[1]
    assert repo['full_name'] == 'acme/api'
    assert repo['slug'] == 'api' and repo['name']
    assert repo['workspace'] == 'acme'
    assert repo['project_key'] == 'PROJ'
    assert repo['is_private'] is True
    assert repo['mainbranch'] == 'main'
    assert repo['language'] == 'python'
    assert repo['description'] == 'Acme API service'
    assert repo['uuid'].startswith('{') and repo['uuid'].endswith('}')
    assert isinstance(repo['size'], int)
    assert repo['updated_on']
    # The API embeds the caller's username in the https link; the module strips it.
    assert repo['clone_url'] == 'https://%s/acme/api.git' % host
    assert '@' not in repo['clone_url']
    assert repo['ssh_url'].endswith('acme/api.git')
    assert repo['html_url'].endswith('/acme/api')


def test_names_are_fetched_one_by_one(emulator, playbook, tmp_path):
    emulator.reset()
    run = run_info(playbook, emulator, tmp_path, name=['api', 'web'])
    assert run.rc == 0, run
    assert [repo['slug'] for repo in run.results['repos']['repositories']] == ['api', 'web']
    assert emulator.stats()['requests']['api'] == 2


def test_query_and_sort(emulator, playbook, tmp_path):
    run = run_info(playbook, emulator, tmp_path, query='project.key = "PROJ"', sort='-name')
    assert run.rc == 0, run
    assert [repo['slug'] for repo in run.results['repos']['repositories']] == ['web', 'api']


def test_role_member(emulator, playbook, tmp_path):
    run = run_info(playbook, emulator, tmp_path, role='member', query='slug ~ "i"')
    assert run.rc == 0, run
    slugs = {repo['slug'] for repo in run.results['repos']['repositories']}
    assert {'api', 'infra'} <= slugs


def test_check_mode_returns_the_same_data(emulator, playbook, tmp_path):
    run = run_info(playbook, emulator, tmp_path, check=True, name=['api'])
    assert run.rc == 0, run
    assert run.results['repos']['changed'] is False
    assert run.results['repos']['repositories'][0]['full_name'] == 'acme/api'


@pytest.mark.parametrize('auth', ['workspace access token', 'app password', 'api token'])
def test_other_auth_methods(auth, emulator, playbook, tmp_path, assert_no_secrets):
    credentials = {
        'workspace access token': {'access_token': WORKSPACE_TOKEN},
        'app password': {'username': 'alice', 'password': APP_PASSWORD},
        'api token': {'username': 'alice@example.com', 'password': API_TOKEN},
    }[auth]
    emulator.reset()
    args = base_args(client_id=None, client_secret=None, token_url=None, cache_dir=None, name=['api'], **credentials)
    run = playbook.run(task(args), save=['repos'], play_vars=play_vars(emulator, tmp_path), verbosity=4)
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['clone_url'].endswith('/acme/api.git')
    assert emulator.stats()['requests']['token'] == 0
    assert_no_secrets(run.output, [WORKSPACE_TOKEN, APP_PASSWORD, API_TOKEN])


def test_expired_token_during_a_run_is_renewed_once(emulator, playbook, tmp_path):
    emulator.reset()
    tasks = [
        {'name': 'Mint', 'codeferry.bitbucket.oauth_token': {
            'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'token_url': '{{ token_url }}',
            'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}'}, 'no_log': True},
        {'name': 'Bitbucket expires every token', 'ansible.builtin.uri': {
            'url': emulator.base_url + '/_emulator/expire', 'method': 'POST', 'ca_path': emulator.ca_file}},
    ] + task(base_args(name=['api']))
    run = playbook.run(tasks, save=['repos'], play_vars=play_vars(emulator, tmp_path))
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['slug'] == 'api'
    stats = emulator.stats()['requests']
    assert stats['token'] == 2  # the first token, then one renewal after the 401
    assert stats['api'] == 2  # the refused request and its retry


def test_given_expired_access_token_fails_clearly(emulator, playbook, tmp_path):
    token = requests.post(emulator.token_url, auth=(CONSUMER['key'], CONSUMER['secret']), data={'grant_type': 'client_credentials'},
                          verify=emulator.ca_file, timeout=10).json()['access_token']
    emulator.expire()
    args = base_args(client_id=None, client_secret=None, token_url=None, cache_dir=None, access_token=token, name=['api'])
    run = playbook.run(task(args), play_vars=play_vars(emulator, tmp_path), verbosity=4)
    assert run.rc != 0
    assert 'HTTP 401: Access token expired. Use your refresh token to obtain a new access token.' in run.output
    assert token not in run.output
    assert 'Traceback' not in run.output


@pytest.mark.parametrize('fault', [
    {'status': 429, 'count': 2},
    {'status': 502, 'count': 1},
    {'status': 503, 'count': 2},
    {'status': 504, 'count': 1},
    {'drop': True, 'count': 1},
    {'status': 429, 'count': 1, 'headers': {'Retry-After': '1'}},
])
def test_transient_failures_are_retried(fault, emulator, playbook, tmp_path):
    run_info(playbook, emulator, tmp_path, name=['api'])  # warm the token cache
    emulator.reset()
    emulator.fault(path_prefix='/2.0/repositories/acme/api', **fault)
    run = run_info(playbook, emulator, tmp_path, name=['api'])
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['slug'] == 'api'
    assert emulator.stats()['requests']['api'] == fault['count'] + 1


def test_persistent_rate_limit_gives_up_with_the_message(emulator, playbook, tmp_path):
    run_info(playbook, emulator, tmp_path, name=['api'])
    emulator.fault(path_prefix='/2.0/repositories/acme/api', status=429, count=50)
    try:
        run = run_info(playbook, emulator, tmp_path, name=['api'])
    finally:
        emulator.clear_faults()
    assert run.rc != 0
    assert 'HTTP 429: Rate limit for this resource has been exceeded' in run.output
    assert 'Traceback' not in run.output


def test_not_found_fails_at_once(emulator, playbook, tmp_path):
    run_info(playbook, emulator, tmp_path, name=['api'])
    emulator.reset()
    run = run_info(playbook, emulator, tmp_path, name=['no-such-repo'])
    assert run.rc != 0
    assert ('GET %s/repositories/acme/no-such-repo: HTTP 404: The requested repository either does not exist '
            'or you do not have access.' % emulator.api_url) in run.output
    assert emulator.stats()['requests']['api'] == 1


@pytest.mark.parametrize('case, args, message', [
    ('empty workspace', {'workspace': ''}, 'workspace'),
    ('malformed workspace', {'workspace': 'acme/api'}, 'workspace'),
    ('api_url without scheme', {'api_url': '127.0.0.1/2.0'}, 'api_url'),
    ('pagelen typo', {'pagelen': 100}, 'pagelen'),
    ('bad role', {'role': 'king'}, 'role'),
    ('wrong secret', {'client_secret': 'wrong-secret'}, 'Invalid OAuth client credentials'),
    ('two auth methods', {'access_token': WORKSPACE_TOKEN}, 'mutually exclusive'),
    ('bad query', {'query': 'nonsense ==== "x"'}, 'HTTP 400'),
])
def test_bad_input_gives_a_clear_error(case, args, message, emulator, playbook, tmp_path, assert_no_secrets):
    run = playbook.run(task(base_args(**args), name=case), play_vars=play_vars(emulator, tmp_path), verbosity=4)
    assert run.rc != 0, run
    assert message in run.output
    assert 'Traceback' not in run.output
    assert_no_secrets(run.output, [CONSUMER['secret'], 'wrong-secret', WORKSPACE_TOKEN])


def test_module_defaults_for_the_action_group(emulator, playbook, tmp_path):
    """Shared options set once for group/codeferry.bitbucket.bitbucket reach every module."""
    defaults = {'group/codeferry.bitbucket.bitbucket': {
        'api_url': '{{ api_url }}', 'token_url': '{{ token_url }}', 'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}',
        'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}'}}
    tasks = [{'name': 'Scoped defaults', 'module_defaults': defaults, 'block': [
        {'name': 'Token', 'codeferry.bitbucket.oauth_token': {}, 'register': 'token', 'no_log': True},
        {'name': 'Repositories', 'codeferry.bitbucket.repository_info': {'workspace': 'acme', 'name': ['api']}, 'register': 'repos'},
        {'name': 'Refs', 'codeferry.bitbucket.ref_info': {'workspace': 'acme', 'repository': 'api', 'name': 'main'}, 'register': 'refs'},
    ]}]
    emulator.reset()
    run = playbook.run(tasks, save=['token', 'repos', 'refs'], play_vars=play_vars(emulator, tmp_path))
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['full_name'] == 'acme/api'
    assert run.results['refs']['refs'][0]['name'] == 'main'
    assert emulator.stats()['requests']['token'] == 1  # one token, shared through the cache


# --- Bitbucket Data Center ------------------------------------------------------------------
# The bundled DC data: project OPS (deploy, config, svc-001..svc-060; alice only), project PUB (docs; public).

DC_PERSONAL = 'dc-personal-read-0123456789abcdefghij'
DC_BOB = 'dc-personal-bob-0123456789abcdefghijk'
DC_PROJECT = 'dc-project-ops-read-0123456789abcdefg'
DC_REPOSITORY = 'dc-repo-deploy-read-0123456789abcde'
DC_PASSWORD = 'alice-password-1'
DC_OPS = {'OPS/deploy', 'OPS/config'} | {'OPS/svc-%03d' % number for number in range(1, 61)}
DC_CREDENTIALS = {
    'personal': {'access_token': DC_PERSONAL},
    'project': {'access_token': DC_PROJECT},
    'repository': {'access_token': DC_REPOSITORY},
    'basic': {'username': 'alice', 'password': DC_PERSONAL},
    'bob': {'access_token': DC_BOB},
}


def run_dc(playbook, emu, credential='personal', verbosity=0, **args):
    module_args = {'api_url': emu.api_url, 'ca_path': emu.ca_file}
    module_args.update({key: '{{ %s }}' % key for key in DC_CREDENTIALS[credential]})
    module_args.update(args)
    return playbook.run(task(module_args), save=['repos'], play_vars=dict(DC_CREDENTIALS[credential]), verbosity=verbosity)


def dc_leaks(emu):
    return emu.stats()['tokens'] + [DC_PASSWORD]


@pytest.mark.parametrize('flavor', ['cloud', 'datacenter'])
def test_the_same_fields_on_both_flavours(flavor, emulator, dc_emulator, playbook, tmp_path):
    if flavor == 'cloud':
        run = run_info(playbook, emulator, tmp_path, name=['api'])
        host, full_name = emulator.git_url.split('://', 1)[1], 'acme/api'
    else:
        run = run_dc(playbook, dc_emulator, workspace='OPS', name=['deploy'])
        host, full_name = dc_emulator.git_url.split('://', 1)[1], 'OPS/deploy'
    assert run.rc == 0, run
    (repo,) = run.results['repos']['repositories']
    assert sorted(repo) == sorted(['full_name', 'slug', 'name', 'uuid', 'workspace', 'project_key', 'is_private', 'mainbranch',
                                   'description', 'language', 'size', 'updated_on', 'clone_url', 'ssh_url', 'html_url'])
    assert repo['full_name'] == full_name
    assert repo['workspace'] == full_name.split('/', maxsplit=1)[0]
    assert repo['is_private'] is True and repo['mainbranch'] == 'main'
    assert repo['clone_url'].startswith('https://%s/' % host) and repo['clone_url'].endswith('.git')
    if flavor == 'datacenter':
        assert repo == dict(repo, slug='deploy', name='deploy', project_key='OPS', description='Deployment scripts',
                            language=None, size=None, updated_on=None,
                            clone_url='https://%s/scm/ops/deploy.git' % host,
                            html_url='https://%s/projects/OPS/repos/deploy/browse' % host)
        assert repo['uuid'].isdigit()
        assert repo['ssh_url'].startswith('ssh://') and repo['ssh_url'].endswith('/ops/deploy.git')


@pytest.mark.parametrize('credential', ['personal', 'basic'])
def test_dc_lists_a_project_with_one_page_and_one_default_branch_request_each(credential, dc_emulator, playbook, assert_no_secrets):
    dc_emulator.reset()
    run = run_dc(playbook, dc_emulator, credential, verbosity=4, workspace='OPS')
    assert run.rc == 0, run
    repos = run.results['repos']['repositories']
    assert {repo['full_name'] for repo in repos} == DC_OPS
    assert {repo['mainbranch'] for repo in repos} == {'main'}
    assert all('@' not in repo['clone_url'] for repo in repos)  # Basic puts the user in the link; it is taken out
    # limit=1000 holds the 62 repositories in one page; then branches/default for each.
    stats = dc_emulator.stats()['requests']
    assert stats['api'] == 1 + 62 and stats['token'] == 0
    assert_no_secrets(run.output, dc_leaks(dc_emulator))


@pytest.mark.parametrize('credential, expected', [
    ('personal', DC_OPS | {'PUB/docs'}),
    ('bob', {'PUB/docs'}),  # no access to OPS: only the public project
    ('project', DC_OPS),
    ('repository', {'OPS/deploy'}),
    ('basic', DC_OPS | {'PUB/docs'}),
])
def test_dc_without_workspace_lists_every_visible_repository(credential, expected, dc_emulator, playbook, assert_no_secrets):
    dc_emulator.reset()
    run = run_dc(playbook, dc_emulator, credential, verbosity=4)
    assert run.rc == 0, run
    repos = run.results['repos']['repositories']
    assert {repo['full_name'] for repo in repos} == expected
    assert [repo['is_private'] for repo in repos if repo['project_key'] == 'PUB'] == [False] * ('PUB/docs' in expected)
    assert dc_emulator.stats()['requests']['api'] == 1 + len(expected)
    assert_no_secrets(run.output, dc_leaks(dc_emulator))


def test_dc_follows_next_page_start_when_the_server_caps_the_limit(make_emulator, dc_data, playbook):
    emu = make_emulator(flavor='datacenter', data=dict(dc_data, max_page_limit=25))
    run = run_dc(playbook, emu)
    assert run.rc == 0, run
    slugs = [repo['full_name'] for repo in run.results['repos']['repositories']]
    assert len(slugs) == len(set(slugs)) == 63
    assert emu.stats()['requests']['api'] == 3 + 63  # 25 + 25 + 13, then one default branch each


def test_dc_names_in_order_two_requests_each(dc_emulator, playbook):
    dc_emulator.reset()
    run = run_dc(playbook, dc_emulator, workspace='OPS', name=['svc-042', 'deploy', 'config'])
    assert run.rc == 0, run
    assert [repo['slug'] for repo in run.results['repos']['repositories']] == ['svc-042', 'deploy', 'config']
    assert dc_emulator.stats()['requests']['api'] == 6


@pytest.mark.parametrize('credential', ['project', 'repository'])
def test_dc_project_and_repository_tokens_by_name(credential, dc_emulator, playbook, assert_no_secrets):
    run = run_dc(playbook, dc_emulator, credential, verbosity=4, workspace='OPS', name=['deploy'])
    assert run.rc == 0, run
    assert run.results['repos']['repositories'][0]['mainbranch'] == 'main'
    assert_no_secrets(run.output, dc_leaks(dc_emulator))


@pytest.mark.parametrize('case, credential, args, message', [
    ('missing project', 'personal', {'workspace': 'NOPE'}, 'HTTP 404: Project NOPE does not exist.'),
    ('missing repository', 'personal', {'workspace': 'OPS', 'name': ['nope']}, 'HTTP 404: Repository OPS/nope does not exist.'),
    ('repository token, other repository', 'repository', {'workspace': 'OPS', 'name': ['config']},
     'HTTP 404: Repository OPS/config does not exist.'),
    ('bob and OPS', 'bob', {'workspace': 'OPS', 'name': ['deploy']}, 'HTTP 404: Project OPS does not exist.'),
    ('query', 'personal', {'workspace': 'OPS', 'query': 'slug ~ "svc"'}, 'query is only supported on Bitbucket Cloud'),
    ('sort', 'personal', {'workspace': 'OPS', 'sort': 'name'}, 'sort is only supported on Bitbucket Cloud'),
    ('role', 'personal', {'role': 'member'}, 'role is only supported on Bitbucket Cloud'),
    ('name without project', 'personal', {'name': ['deploy']}, 'name needs workspace (the project key)'),
    ('bad project key', 'personal', {'workspace': 'OPS/deploy'}, 'workspace must be a Data Center project key'),
    ('wrong token', 'personal', {'workspace': 'OPS', 'access_token': 'dc-wrong-0123456789abcdefghijk'},
     'HTTP 401: Authentication failed.'),
])
def test_dc_errors_are_clear(case, credential, args, message, dc_emulator, playbook, assert_no_secrets):
    dc_emulator.reset()
    run = run_dc(playbook, dc_emulator, credential, verbosity=4, **args)
    assert run.rc != 0, (case, run)
    assert message in run.output, case
    assert 'Traceback' not in run.output
    assert_no_secrets(run.output, dc_leaks(dc_emulator) + ['dc-wrong-0123456789abcdefghijk'])
    if 'only supported' in message or 'workspace' in message:
        assert dc_emulator.stats()['requests']['api'] == 0  # refused before any request


def test_cloud_still_requires_workspace(emulator, playbook, tmp_path):
    run = playbook.run(task(base_args(workspace=None)), play_vars=play_vars(emulator, tmp_path))
    assert run.rc != 0
    assert 'workspace is required on Bitbucket Cloud' in run.output
    assert 'Traceback' not in run.output
