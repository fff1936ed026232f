"""The Data Center flavour's REST 1.0: projects, repositories, refs, commits, paging, errors and who sees what."""

import copy
import os
import subprocess
import sys

import pytest

EMULATOR = os.path.join(os.path.dirname(sys.executable), 'bitbucket-emulator')
OPS_AND_PUB = ['OPS/' + slug for slug in ['deploy', 'config'] + ['svc-%03d' % n for n in range(1, 61)]] + ['PUB/docs']


# ---------------------------------------------------------------- command line and data file

def run_serve(tmp_path, *options, data=None):
    """Run `serve --flavor datacenter` expecting it to fail at once; returns (code, stderr)."""
    argv = [EMULATOR, 'serve', '--flavor', 'datacenter', '--state-dir', str(tmp_path / 'state')] + list(options)
    if data is not None:
        path = tmp_path / 'data.yml'
        path.write_text(data)
        argv += ['--data', str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    return result.returncode, result.stderr


def test_ready_line(dc_emulator):
    info = dc_emulator.info
    base = info['base_url']
    assert info == {'flavor': 'datacenter', 'base_url': base, 'api_url': base + '/rest/api/1.0',
                    'token_url': base + '/rest/oauth2/latest/token', 'authorize_url': base + '/rest/oauth2/latest/authorize',
                    'git_url': base, 'ca_file': info['ca_file']}
    assert os.path.isfile(info['ca_file'])


@pytest.mark.parametrize('data,message', [
    ('projects: [{key: OPS, colour: red}]', "projects[0]: unknown key 'colour'"),
    ('nonsense: 1', "data file: unknown key 'nonsense'"),
    ('max_page_limit: many', 'max_page_limit: expected an integer, got str'),
    ('max_page_limit: 0', 'max_page_limit: 0 is out of range'),
    ('users: [{username: a, tokens: [{token: t, permission: READ}]}]', 'users[0].tokens[0].permission: must be one of'),
    ('users: [{username: a, tokens: [{token: t}]}]', "users[0].tokens[0]: missing required key 'permission'"),
    ('projects: [{key: "1X"}]', 'projects[0].key'),
    ('projects: [{key: OPS, public: yes-please}]', 'projects[0].public: expected true or false, got str'),
    ('projects: [{key: OPS, members: [nobody]}]', "projects[0].members: unknown user 'nobody'"),
    ('projects: [{key: OPS, repositories: [{slug: a, branches: []}]}]', 'at least one branch'),
    ('projects: [{key: OPS, repositories: [{slug: a}, {slug: A}]}]', 'duplicate repository slug'),
    ('oauth_applications: [{client_id: c, client_secret: s, redirect_uri: u, scopes: [ADMIN]}]', "'ADMIN' is not one of"),
    ('oauth_applications: [{client_id: c, client_secret: s}]', "missing required key 'redirect_uri'"),
    ('projects: [', 'invalid YAML'),
])
def test_bad_data_file_is_one_line_and_exit_2(tmp_path, data, message):
    code, stderr = run_serve(tmp_path, data=data)
    assert code == 2
    assert stderr.count('\n') == 1 and stderr.startswith('bitbucket-emulator: error: ')
    assert message in stderr
    assert 'Traceback' not in stderr


def test_legacy_mode_is_cloud_only(tmp_path):
    code, stderr = run_serve(tmp_path, '--mode', 'legacy')
    assert code == 2
    assert 'cloud flavour only' in stderr


def test_bundled_data_has_the_contract_values(dc_data):
    users = {user['username']: user for user in dc_data['users']}
    assert users['alice']['display_name'] == 'Alice Example'
    assert users['alice']['email'] == 'alice@example.com'
    assert users['alice']['password'] == 'alice-password-1'
    assert users['alice']['tokens'] == [{'token': 'dc-personal-read-0123456789abcdefghij', 'permission': 'REPO_READ', 'name': 'alice-read'}]
    assert [token['token'] for token in users['bob']['tokens']] == ['dc-personal-bob-0123456789abcdefghijk']
    projects = {project['key']: project for project in dc_data['projects']}
    assert (projects['OPS']['name'], projects['OPS']['public']) == ('Operations', False)
    assert (projects['PUB']['name'], projects['PUB']['public']) == ('Public', True)
    assert 'bob' not in projects['OPS']['members']
    assert projects['OPS']['tokens'][0]['token'] == 'dc-project-ops-read-0123456789abcdefg'
    assert projects['OPS']['repositories'][0]['tokens'][0]['token'] == 'dc-repo-deploy-read-0123456789abcde'
    assert projects['OPS']['generate_repositories'] == {'count': 60, 'prefix': 'svc-'}
    app = dc_data['oauth_applications'][0]
    assert (app['client_id'], app['client_secret'], app['redirect_uri']) == (
        'dc-client-0123456789abcdef', 'dc-secret+With/Odd=Chars0123456789', 'http://127.0.0.1:8977/callback')
    assert app['scopes'] == ['PUBLIC_REPOS', 'REPO_READ', 'REPO_WRITE', 'REPO_ADMIN', 'PROJECT_ADMIN']


# ---------------------------------------------------------------- who sees what

def test_latest_is_an_alias_of_1_0(dc):
    one = dc.get('/projects/OPS/repos/deploy', token=dc.ALICE_TOKEN)
    latest = dc.get(dc.base_url + '/rest/api/latest/projects/OPS/repos/deploy', token=dc.ALICE_TOKEN)
    assert one.status_code == latest.status_code == 200
    assert one.json() == latest.json()


@pytest.mark.parametrize('who,projects', [
    ('anonymous', ['PUB']), ('alice', ['OPS', 'PUB']), ('bob', ['PUB']), ('project', ['OPS']), ('repository', ['OPS']),
])
def test_projects_visible(dc, who, projects):
    token = {'anonymous': None, 'alice': dc.ALICE_TOKEN, 'bob': dc.BOB_TOKEN, 'project': dc.PROJECT_TOKEN, 'repository': dc.REPO_TOKEN}[who]
    values = dc.list_all('/projects', token)[1]
    assert [project['key'] for project in values] == projects


@pytest.mark.parametrize('who,expected', [
    ('anonymous', ['PUB/docs']), ('alice', OPS_AND_PUB), ('bob', ['PUB/docs']), ('project', OPS_AND_PUB[:-1]),
    ('repository', ['OPS/deploy']),
])
def test_repos_lists_what_the_caller_can_read(dc, who, expected):
    token = {'anonymous': None, 'alice': dc.ALICE_TOKEN, 'bob': dc.BOB_TOKEN, 'project': dc.PROJECT_TOKEN, 'repository': dc.REPO_TOKEN}[who]
    assert dc.slugs('/repos', token) == expected


def test_repos_filters(dc):
    assert dc.slugs('/repos', dc.ALICE_TOKEN, params={'limit': 1000, 'name': 'DEPL'}) == ['OPS/deploy']
    assert dc.slugs('/repos', dc.ALICE_TOKEN, params={'limit': 1000, 'projectname': 'public'}) == ['PUB/docs']
    assert dc.slugs('/repos', dc.ALICE_TOKEN, params={'limit': 1000, 'visibility': 'public'}) == ['PUB/docs']
    assert len(dc.slugs('/repos', dc.ALICE_TOKEN, params={'limit': 1000, 'visibility': 'private'})) == 62


def test_project_object(dc):
    response = dc.get('/projects/OPS', token=dc.ALICE_TOKEN)
    assert response.status_code == 200
    assert response.json() == {'key': 'OPS', 'id': 1, 'name': 'Operations', 'public': False, 'type': 'NORMAL',
                               'links': {'self': [{'href': dc.base_url + '/projects/OPS'}]}}


def test_repository_object(dc):
    response = dc.get('/projects/OPS/repos/deploy', token=dc.ALICE_TOKEN)
    assert response.status_code == 200
    assert response.headers['X-AUSERNAME'] == 'alice'
    repo = response.json()
    assert {'slug', 'id', 'name', 'hierarchyId', 'scmId', 'state', 'statusMessage', 'forkable', 'project', 'public', 'links'} <= set(repo)
    assert (repo['slug'], repo['name'], repo['scmId'], repo['state'], repo['public']) == ('deploy', 'deploy', 'git', 'AVAILABLE', False)
    assert isinstance(repo['id'], int) and len(repo['hierarchyId']) == 20
    assert repo['project']['key'] == 'OPS' and repo['project']['type'] == 'NORMAL'
    assert isinstance(repo['project']['links']['self'], list)
    netloc = dc.base_url.split('://', 1)[1]
    host = netloc.rsplit(':', 1)[0]
    assert sorted(repo['links']['clone'], key=lambda link: link['name']) == [
        {'href': 'https://%s/scm/ops/deploy.git' % netloc, 'name': 'http'},
        {'href': 'ssh://git@%s:7999/ops/deploy.git' % host, 'name': 'ssh'},
    ]
    assert repo['links']['self'] == [{'href': dc.base_url + '/projects/OPS/repos/deploy/browse'}]
    public = dc.get('/projects/PUB/repos/docs').json()
    assert public['public'] is True and public['project']['public'] is True


@pytest.mark.parametrize('path,token,message', [
    ('/projects/NOPE', 'alice', 'Project NOPE does not exist.'),
    ('/projects/NOPE/repos', 'alice', 'Project NOPE does not exist.'),
    ('/projects/NOPE/repos/deploy', 'alice', 'Project NOPE does not exist.'),
    ('/projects/OPS/repos/nope', 'alice', 'Repository OPS/nope does not exist.'),
    ('/projects/OPS/repos/nope/branches', 'alice', 'Repository OPS/nope does not exist.'),
    ('/projects/OPS', 'bob', 'Project OPS does not exist.'),
    ('/projects/OPS/repos/deploy', None, 'Project OPS does not exist.'),
    ('/projects/OPS/repos/config', 'repository', 'Repository OPS/config does not exist.'),
    ('/projects/PUB/repos/docs', 'project', 'Project PUB does not exist.'),
    ('/projects/PUB/repos/docs', 'repository', 'Project PUB does not exist.'),
])
def test_not_found_is_404_envelope(dc, path, token, message):
    token = {'alice': dc.ALICE_TOKEN, 'bob': dc.BOB_TOKEN, 'project': dc.PROJECT_TOKEN, 'repository': dc.REPO_TOKEN, None: None}[token]
    response = dc.get(path, token=token)
    assert response.status_code == 404
    assert dc.errors(response) == [message]
    assert response.json()['errors'][0]['exceptionName'].startswith('com.atlassian.bitbucket.')
    assert response.json()['errors'][0]['context'] is None


def test_unknown_rest_path_is_404_envelope(dc):
    response = dc.get('/nothing/here', token=dc.ALICE_TOKEN)
    assert response.status_code == 404
    assert dc.errors(response)


# ---------------------------------------------------------------- authentication

@pytest.mark.parametrize('kind', ['bearer-personal', 'bearer-project', 'bearer-repository', 'basic-personal', 'basic-password'])
def test_credentials_accepted(dc, kind):
    headers = {
        'bearer-personal': {'Authorization': 'Bearer ' + dc.ALICE_TOKEN},
        'bearer-project': {'Authorization': 'Bearer ' + dc.PROJECT_TOKEN},
        'bearer-repository': {'Authorization': 'Bearer ' + dc.REPO_TOKEN},
        'basic-personal': dc.basic('alice', dc.ALICE_TOKEN),
        'basic-password': dc.basic('alice', dc.ALICE_PASSWORD),
    }[kind]
    response = dc.get('/projects/OPS/repos/deploy', headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers['X-AUSERNAME']
    if kind.startswith('basic') or kind == 'bearer-personal':
        assert response.headers['X-AUSERNAME'] == 'alice'


@pytest.mark.parametrize('kind', ['basic-project-token', 'basic-repository-token', 'basic-other-users-token', 'basic-wrong-password',
                                  'basic-unknown-user', 'bearer-unknown', 'bearer-password', 'other-scheme'])
def test_credentials_refused_with_401_envelope(dc, kind):
    headers = {
        'basic-project-token': dc.basic('alice', dc.PROJECT_TOKEN),
        'basic-repository-token': dc.basic('alice', dc.REPO_TOKEN),
        'basic-other-users-token': dc.basic('bob', dc.ALICE_TOKEN),
        'basic-wrong-password': dc.basic('alice', 'wrong'),
        'basic-unknown-user': dc.basic('mallory', dc.ALICE_TOKEN),
        'bearer-unknown': {'Authorization': 'Bearer not-a-token'},
        'bearer-password': {'Authorization': 'Bearer ' + dc.ALICE_PASSWORD},
        'other-scheme': {'Authorization': 'Token ' + dc.ALICE_TOKEN},
    }[kind]
    # Even a public repository: bad credentials are never downgraded to anonymous.
    response = dc.get('/projects/PUB/repos/docs', headers=headers)
    assert response.status_code == 401
    assert dc.errors(response) == ['Authentication failed. Please check your credentials and try again.']
    assert response.headers['WWW-Authenticate'] == 'Basic realm="Bitbucket"'
    assert 'X-AUSERNAME' not in response.headers


def test_anonymous_gets_no_username_header(dc):
    response = dc.get('/projects/PUB/repos/docs')
    assert response.status_code == 200
    assert 'X-AUSERNAME' not in response.headers


def test_application_properties(dc):
    response = dc.get('/application-properties', token=dc.ALICE_TOKEN)
    assert response.status_code == 200
    assert response.json()['displayName'] == 'Bitbucket'
    assert response.headers['X-AUSERNAME'] == 'alice'


# ---------------------------------------------------------------- paging

def test_default_limit_is_25_and_next_page_start(dc):
    pages, values = dc.list_all('/projects/OPS/repos', dc.ALICE_TOKEN)
    assert [page['limit'] for page in pages] == [25, 25, 25]
    assert [page['start'] for page in pages] == [0, 25, 50]
    assert [page['size'] for page in pages] == [25, 25, 12]
    assert [page['isLastPage'] for page in pages] == [False, False, True]
    assert [page.get('nextPageStart') for page in pages] == [25, 50, None]
    assert [repo['slug'] for repo in values] == dc.OPS_SLUGS
    assert set(pages[0]) == {'size', 'limit', 'isLastPage', 'start', 'values', 'nextPageStart'}
    assert set(pages[-1]) == {'size', 'limit', 'isLastPage', 'start', 'values'}


def test_one_big_page(dc):
    page = dc.get('/projects/OPS/repos', token=dc.ALICE_TOKEN, params={'limit': 1000}).json()
    assert (page['size'], page['limit'], page['isLastPage'], page['start']) == (62, 1000, True, 0)
    assert 'nextPageStart' not in page


def test_exact_last_page_has_no_next(dc):
    page = dc.get('/projects/OPS/repos', token=dc.ALICE_TOKEN, params={'limit': 31, 'start': 31}).json()
    assert (page['size'], page['isLastPage']) == (31, True)
    assert 'nextPageStart' not in page


def test_start_beyond_the_end(dc):
    page = dc.get('/projects/OPS/repos', token=dc.ALICE_TOKEN, params={'start': 500}).json()
    assert page == {'size': 0, 'limit': 25, 'isLastPage': True, 'start': 500, 'values': []}


@pytest.mark.parametrize('params', [{'start': '-1'}, {'start': 'x'}, {'limit': '0'}, {'limit': '-5'}, {'limit': 'many'}])
def test_bad_start_or_limit_is_400_envelope(dc, params):
    response = dc.get('/projects/OPS/repos', token=dc.ALICE_TOKEN, params=params)
    assert response.status_code == 400
    assert 'Invalid %s' % next(iter(params)) in dc.errors(response)[0]


def test_limit_is_capped_to_the_server_maximum(make_emulator, dc_for, dc_data):
    data = copy.deepcopy(dc_data)
    data['max_page_limit'] = 10
    dc = dc_for(make_emulator(flavor='datacenter', data=data))
    first = dc.get('/projects/OPS/repos', token=dc.ALICE_TOKEN, params={'limit': 1000}).json()
    assert (first['limit'], first['size'], first['nextPageStart']) == (10, 10, 10)
    pages, values = dc.list_all('/projects/OPS/repos', dc.ALICE_TOKEN, params={'limit': 50})
    assert len(pages) == 7 and {page['limit'] for page in pages} == {10}
    assert [repo['slug'] for repo in values] == dc.OPS_SLUGS


def test_paging_applies_to_projects_and_refs(dc):
    page = dc.get('/projects', token=dc.ALICE_TOKEN, params={'limit': 1}).json()
    assert (page['size'], page['isLastPage'], page['nextPageStart']) == (1, False, 1)
    page = dc.get('/projects/OPS/repos/deploy/branches', token=dc.ALICE_TOKEN, params={'limit': 1, 'start': 1}).json()
    assert (page['size'], page['isLastPage'], page['start']) == (1, True, 1)


# ---------------------------------------------------------------- branches, tags, commits

def test_branches(dc):
    refs = dc.ls_remote(dc.scm_url('OPS', 'deploy', 'alice', dc.ALICE_TOKEN))
    page = dc.get('/projects/OPS/repos/deploy/branches', token=dc.ALICE_TOKEN).json()
    assert [branch['displayId'] for branch in page['values']] == ['main', 'release/1.x']
    main, release = page['values']
    assert main == {'id': 'refs/heads/main', 'displayId': 'main', 'type': 'BRANCH', 'latestCommit': refs['refs/heads/main'],
                    'latestChangeset': refs['refs/heads/main'], 'isDefault': True}
    assert release['isDefault'] is False and release['latestCommit'] == refs['refs/heads/release/1.x']


def test_branches_filter_and_order(dc):
    path = '/projects/OPS/repos/deploy/branches'
    assert [b['displayId'] for b in dc.get(path, token=dc.ALICE_TOKEN, params={'filterText': 'REL'}).json()['values']] == ['release/1.x']
    assert dc.get(path, token=dc.ALICE_TOKEN, params={'filterText': 'nothing'}).json()['values'] == []
    alphabetical = dc.get(path, token=dc.ALICE_TOKEN, params={'orderBy': 'ALPHABETICAL'}).json()['values']
    assert [b['displayId'] for b in alphabetical] == ['main', 'release/1.x']
    # The main branch's last commit is the newest: generated data puts the other branches in the middle.
    modified = dc.get(path, token=dc.ALICE_TOKEN, params={'orderBy': 'MODIFICATION'}).json()['values']
    assert [b['displayId'] for b in modified] == ['main', 'release/1.x']
    response = dc.get(path, token=dc.ALICE_TOKEN, params={'orderBy': 'SIDEWAYS'})
    assert response.status_code == 400 and 'orderBy' in dc.errors(response)[0]


def test_order_by_modification_follows_new_commits(make_emulator, dc_for):
    dc_emulator = make_emulator(flavor='datacenter')
    dc = dc_for(dc_emulator)
    dc_emulator.commit('OPS/deploy', {'notes.txt': 'newer'}, branch='release/1.x', message='Newer work')
    path = '/projects/OPS/repos/deploy/branches'
    assert [b['displayId'] for b in dc.get(path, token=dc.ALICE_TOKEN, params={'orderBy': 'MODIFICATION'}).json()['values']] == [
        'release/1.x', 'main']


def test_branch_details_carry_the_latest_commit(dc):
    page = dc.get('/projects/OPS/repos/config/branches', token=dc.ALICE_TOKEN, params={'details': 'true'}).json()
    branch = page['values'][0]
    commit = branch['metadata']['com.atlassian.bitbucket.server.bitbucket-branch:latest-commit-metadata']
    assert commit['id'] == branch['latestCommit']
    assert commit['author'] == {'name': 'Alice Example', 'emailAddress': 'alice@example.com'}


def test_default_branch(dc):
    for path in ('/projects/OPS/repos/deploy/branches/default', '/projects/OPS/repos/deploy/default-branch'):
        branch = dc.get(path, token=dc.ALICE_TOKEN).json()
        assert (branch['id'], branch['displayId'], branch['type'], branch['isDefault']) == ('refs/heads/main', 'main', 'BRANCH', True)


def test_tags(dc):
    refs = dc.ls_remote(dc.scm_url('OPS', 'deploy', 'alice', dc.ALICE_TOKEN))
    page = dc.get('/projects/OPS/repos/deploy/tags', token=dc.ALICE_TOKEN).json()
    assert page['values'] == [{'id': 'refs/tags/v1.0.0', 'displayId': 'v1.0.0', 'type': 'TAG',
                               'latestCommit': refs['refs/tags/v1.0.0^{}'], 'latestChangeset': refs['refs/tags/v1.0.0^{}'],
                               'hash': refs['refs/tags/v1.0.0']}]
    path = '/projects/OPS/repos/deploy/tags'
    assert dc.get(path, token=dc.ALICE_TOKEN, params={'filterText': 'v1', 'orderBy': 'MODIFICATION'}).json()['size'] == 1
    assert dc.get(path, token=dc.ALICE_TOKEN, params={'filterText': 'v2'}).json()['values'] == []
    assert dc.get('/projects/OPS/repos/config/tags', token=dc.ALICE_TOKEN).json()['values'] == []
    assert dc.get(path + '/v1.0.0', token=dc.ALICE_TOKEN).json()['displayId'] == 'v1.0.0'
    assert dc.get(path + '/v9', token=dc.ALICE_TOKEN).status_code == 404


@pytest.mark.parametrize('ident', ['hash', 'short', 'main', 'refs/heads/main', 'release/1.x', 'v1.0.0', 'refs/tags/v1.0.0'])
def test_commit_by_hash_or_ref(dc, ident):
    refs = dc.ls_remote(dc.scm_url('OPS', 'deploy', 'alice', dc.ALICE_TOKEN))
    expected = {'hash': refs['refs/heads/main'], 'short': refs['refs/heads/main'], 'main': refs['refs/heads/main'],
                'refs/heads/main': refs['refs/heads/main'], 'release/1.x': refs['refs/heads/release/1.x'],
                'v1.0.0': refs['refs/tags/v1.0.0^{}'], 'refs/tags/v1.0.0': refs['refs/tags/v1.0.0^{}']}[ident]
    name = {'hash': expected, 'short': expected[:10]}.get(ident, ident)
    response = dc.get('/projects/OPS/repos/deploy/commits/' + name, token=dc.ALICE_TOKEN)
    assert response.status_code == 200, response.text
    commit = response.json()
    assert commit['id'] == expected and commit['displayId'] == expected[:11]
    assert commit['author'] == {'name': 'Alice Example', 'emailAddress': 'alice@example.com'}
    assert isinstance(commit['authorTimestamp'], int) and commit['authorTimestamp'] > 1_600_000_000_000
    assert isinstance(commit['committerTimestamp'], int)
    assert commit['message'] and not commit['message'].endswith('\n')
    assert len(commit['parents']) == 1 and set(commit['parents'][0]) == {'id', 'displayId'}


def test_commit_matches_git(dc, tmp_path):
    dest = tmp_path / 'deploy'
    dc.git('clone', '--quiet', dc.scm_url('OPS', 'deploy', 'alice', dc.ALICE_TOKEN), str(dest))
    fields = dc.git('log', '-1', '--format=%H%n%P%n%at%n%ct%n%s', cwd=dest).stdout.splitlines()
    commit = dc.get('/projects/OPS/repos/deploy/commits/main', token=dc.ALICE_TOKEN).json()
    assert [commit['id'], commit['parents'][0]['id'], str(commit['authorTimestamp'] // 1000),
            str(commit['committerTimestamp'] // 1000), commit['message']] == fields


def test_first_commit_has_no_parents(dc):
    page = dc.get('/projects/OPS/repos/config/commits/main', token=dc.ALICE_TOKEN).json()
    first = page
    while first['parents']:
        first = dc.get('/projects/OPS/repos/config/commits/' + first['parents'][0]['id'], token=dc.ALICE_TOKEN).json()
    assert first['message'] == 'Initial commit'


@pytest.mark.parametrize('ident', ['nope', '0123456789abcdef', 'refs/heads/nope'])
def test_unknown_commit_is_404(dc, ident):
    response = dc.get('/projects/OPS/repos/deploy/commits/' + ident, token=dc.ALICE_TOKEN)
    assert response.status_code == 404
    assert dc.errors(response) == ["Commit '%s' does not exist in repository 'deploy'." % ident]
    assert response.json()['errors'][0]['exceptionName'] == 'com.atlassian.bitbucket.commit.NoSuchCommitException'


def test_control_commit_shows_in_the_api(make_emulator, dc_for):
    dc_emulator = make_emulator(flavor='datacenter')
    dc = dc_for(dc_emulator)
    new = dc_emulator.commit('OPS/config', {'settings.ini': '[a]\n'}, message='Add settings')
    branch = dc.get('/projects/OPS/repos/config/branches/default', token=dc.ALICE_TOKEN).json()
    assert branch['latestCommit'] == new
    assert dc.get('/projects/OPS/repos/config/commits/' + new, token=dc.ALICE_TOKEN).json()['message'] == 'Add settings'


# ---------------------------------------------------------------- controls

def test_stats_list_data_tokens_and_count_requests(make_emulator, dc_for):
    emulator = make_emulator(flavor='datacenter')
    dc = dc_for(emulator)
    stats = emulator.reset()
    assert stats['requests'] == {'token': 0, 'api': 0, 'git': 0, 'archive': 0}
    for token in (dc.ALICE_TOKEN, dc.BOB_TOKEN, dc.PROJECT_TOKEN, dc.REPO_TOKEN):
        assert token in stats['tokens']
    dc.get('/projects', token=dc.ALICE_TOKEN)
    dc.get(dc.base_url + '/rest/api/latest/repos')
    dc.get(dc.base_url + '/rest/api/latest/projects/OPS/repos/deploy/archive', token=dc.ALICE_TOKEN, params={'format': 'zip'})
    dc.ls_remote(dc.scm_url('PUB', 'docs'))
    tokens = dc.oauth_tokens()
    stats = emulator.stats()
    assert stats['requests']['api'] == 2 and stats['requests']['archive'] == 1 and stats['requests']['token'] == 1
    assert stats['requests']['git'] >= 1
    assert tokens['access_token'] in stats['tokens'] and tokens['refresh_token'] in stats['tokens']


def test_rate_limit_fault_has_retry_after(make_emulator, dc_for):
    emulator = make_emulator(flavor='datacenter')
    dc = dc_for(emulator)
    emulator.fault(path_prefix='/rest/api/1.0/projects', status=429)
    limited = dc.get('/projects', token=dc.ALICE_TOKEN)
    assert limited.status_code == 429
    assert limited.headers['Retry-After'] == '1'
    assert dc.errors(limited)
    assert dc.get('/projects', token=dc.ALICE_TOKEN).status_code == 200
    emulator.fault(path_prefix='/rest/api/1.0/projects', status=429, headers={'Retry-After': '7'})
    assert dc.get('/projects', token=dc.ALICE_TOKEN).headers['Retry-After'] == '7'
    emulator.fault(path_prefix='/scm/', status=429)
    assert dc.get(dc.scm_url('PUB', 'docs') + '/info/refs?service=git-upload-pack').headers['Retry-After'] == '1'
    emulator.fault(path_prefix='/rest/api/1.0/repos', status=503)
    unavailable = dc.get('/repos')
    assert unavailable.status_code == 503 and dc.errors(unavailable) == ['Service Unavailable']
