"""codeferry.bitbucket.ref_info against the emulator: resolving branches and tags to commits."""

import subprocess

import pytest

CONSUMER = {'key': 'demoKey1234567890ab', 'secret': 'demoSecret+With/Odd=Chars0123456789'}
WORKSPACE_TOKEN = 'ATCTT3xFfGN0acme+workspace/token='


def run_refs(playbook, emulator, tmp_path, verbosity=0, **args):
    module_args = {'access_token': '{{ token }}', 'api_url': emulator.api_url, 'ca_path': emulator.ca_file,
                   'workspace': 'acme', 'repository': 'api'}
    module_args.update(args)
    tasks = [{'name': 'Refs', 'codeferry.bitbucket.ref_info': module_args, 'register': 'refs'}]
    return playbook.run(tasks, save=['refs'], play_vars={'token': WORKSPACE_TOKEN}, verbosity=verbosity)


def ls_remote(emulator, repository):
    """The refs as real git sees them over smart HTTP, with the token in a credential helper."""
    helper = '!f() { echo username=x-token-auth; echo "password=$TEST_TOKEN"; }; f'
    out = subprocess.run(['git', '-c', 'credential.helper=', '-c', 'credential.helper=' + helper,
                          'ls-remote', '%s/acme/%s.git' % (emulator.git_url, repository)],
                         env=dict(emulator.git_env(), TEST_TOKEN=WORKSPACE_TOKEN),
                         check=True, capture_output=True, text=True).stdout
    refs = {}
    for line in out.splitlines():
        commit, name = line.split('\t')
        refs[name] = commit
    return refs


def test_branch_resolves_to_the_commit_git_sees(emulator, playbook, tmp_path, assert_no_secrets):
    run = run_refs(playbook, emulator, tmp_path, verbosity=4, kind='branch', name='main')
    assert run.rc == 0, run
    refs = run.results['refs']
    assert refs['changed'] is False
    assert 'mainbranch' not in refs  # a name is looked up without fetching the repository
    (ref,) = refs['refs']
    assert ref['name'] == 'main' and ref['type'] == 'branch'
    assert ref['commit'] == ls_remote(emulator, 'api')['refs/heads/main']
    assert len(ref['commit']) == 40
    assert ref['date']
    assert_no_secrets(run.output, [WORKSPACE_TOKEN])


@pytest.mark.parametrize('kind, name, expected', [
    ('branch', 'main', [('branch', 'main')]),
    ('tag', 'v1.0.0', [('tag', 'v1.0.0')]),
    ('all', 'release/1.x', [('branch', 'release/1.x')]),
    ('all', 'v1.0.0', [('tag', 'v1.0.0')]),
])
def test_a_named_ref_costs_one_api_request(kind, name, expected, emulator, playbook, tmp_path):
    emulator.reset()
    run = run_refs(playbook, emulator, tmp_path, kind=kind, name=name)
    assert run.rc == 0, run
    assert [(ref['type'], ref['name']) for ref in run.results['refs']['refs']] == expected
    assert run.results['refs']['commit'] == run.results['refs']['refs'][0]['commit']
    assert emulator.stats()['requests']['api'] == 1


def test_all_kinds_with_a_name_that_is_both_a_branch_and_a_tag(make_emulator, playbook, tmp_path):
    emulator = make_emulator()
    emulator.commit('acme/api', {'both.txt': 'x'}, branch='v1.0.0')
    run = run_refs(playbook, emulator, tmp_path, kind='all', name='v1.0.0')
    assert run.rc == 0, run
    assert [ref['type'] for ref in run.results['refs']['refs']] == ['branch', 'tag']
    assert 'commit' not in run.results['refs']


def test_branch_name_with_a_slash(emulator, playbook, tmp_path):
    run = run_refs(playbook, emulator, tmp_path, kind='branch', name='release/1.x')
    assert run.rc == 0, run
    (ref,) = run.results['refs']['refs']
    assert ref['name'] == 'release/1.x'
    assert ref['commit'] == ls_remote(emulator, 'api')['refs/heads/release/1.x']


def test_tag(emulator, playbook, tmp_path):
    run = run_refs(playbook, emulator, tmp_path, kind='tag', name='v1.0.0')
    assert run.rc == 0, run
    (ref,) = run.results['refs']['refs']
    assert ref['type'] == 'tag' and ref['name'] == 'v1.0.0'
    remote = ls_remote(emulator, 'api')
    # The tag's commit: the peeled object for an annotated tag, the tag itself for a lightweight one.
    assert ref['commit'] == remote.get('refs/tags/v1.0.0^{}', remote['refs/tags/v1.0.0'])


def test_all_refs(emulator, playbook, tmp_path):
    run = run_refs(playbook, emulator, tmp_path, kind='all')
    assert run.rc == 0, run
    names = {(ref['type'], ref['name']) for ref in run.results['refs']['refs']}
    assert names == {('branch', 'main'), ('branch', 'release/1.x'), ('tag', 'v1.0.0')}


def test_query(emulator, playbook, tmp_path):
    run = run_refs(playbook, emulator, tmp_path, repository='web', kind='branch', query='name ~ "dev"')
    assert run.rc == 0, run
    assert [ref['name'] for ref in run.results['refs']['refs']] == ['develop']
    assert run.results['refs']['mainbranch'] == 'main'


@pytest.mark.parametrize('case, args, message', [
    ('missing branch', {'kind': 'branch', 'name': 'no-such-branch'}, 'HTTP 404'),
    ('missing repository', {'repository': 'nope', 'kind': 'branch', 'name': 'main'}, 'HTTP 404: The requested repository either does not exist'),
    ('bad kind', {'kind': 'commit'}, 'kind'),
    ('name and query', {'name': 'main', 'query': 'name = "main"'}, 'mutually exclusive'),
    ('empty repository', {'repository': ''}, 'repository'),
])
def test_errors_are_clear(case, args, message, emulator, playbook, tmp_path, assert_no_secrets):
    run = run_refs(playbook, emulator, tmp_path, verbosity=4, **args)
    assert run.rc != 0, (case, run)
    assert message in run.output
    assert 'Traceback' not in run.output
    assert_no_secrets(run.output, [WORKSPACE_TOKEN])


# --- Bitbucket Data Center ------------------------------------------------------------------

DC_PERSONAL = 'dc-personal-read-0123456789abcdefghij'
DC_CREDENTIALS = {
    'personal': {'access_token': DC_PERSONAL},
    'project': {'access_token': 'dc-project-ops-read-0123456789abcdefg'},
    'repository': {'access_token': 'dc-repo-deploy-read-0123456789abcde'},
    'basic': {'username': 'alice', 'password': DC_PERSONAL},
    'bob': {'access_token': 'dc-personal-bob-0123456789abcdefghijk'},
}


def run_dc_refs(playbook, emu, credential='personal', verbosity=0, **args):
    module_args = {'api_url': emu.api_url, 'ca_path': emu.ca_file, 'workspace': 'OPS', 'repository': 'deploy'}
    module_args.update({key: '{{ %s }}' % key for key in DC_CREDENTIALS[credential]})
    module_args.update(args)
    tasks = [{'name': 'Refs', 'codeferry.bitbucket.ref_info': module_args, 'register': 'refs'}]
    return playbook.run(tasks, save=['refs'], play_vars=dict(DC_CREDENTIALS[credential]), verbosity=verbosity)


def dc_ls_remote(emu, repository='deploy'):
    """The refs real git sees over smart HTTP, the Bearer token in http.extraHeader from the environment."""
    env = dict(emu.git_env(), GIT_CONFIG_COUNT='1', GIT_CONFIG_KEY_0='http.extraHeader',
               GIT_CONFIG_VALUE_0='Authorization: Bearer ' + DC_PERSONAL)
    out = subprocess.run(['git', 'ls-remote', '%s/scm/ops/%s.git' % (emu.git_url, repository)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return dict(reversed(line.split('\t')) for line in out.splitlines())


@pytest.mark.parametrize('flavor', ['cloud', 'datacenter'])
def test_a_branch_by_name_on_both_flavours(flavor, emulator, dc_emulator, playbook, tmp_path):
    if flavor == 'cloud':
        run = run_refs(playbook, emulator, tmp_path, name='release/1.x')
        commit = ls_remote(emulator, 'api')['refs/heads/release/1.x']
    else:
        run = run_dc_refs(playbook, dc_emulator, name='release/1.x')
        commit = dc_ls_remote(dc_emulator)['refs/heads/release/1.x']
    assert run.rc == 0, run
    (ref,) = run.results['refs']['refs']
    assert sorted(ref) == ['commit', 'date', 'name', 'type']
    assert (ref['name'], ref['type'], ref['commit']) == ('release/1.x', 'branch', commit)
    assert ref['date']  # on DC from the branch listing's latest-commit metadata, at no extra request
    assert run.results['refs']['commit'] == commit
    assert 'mainbranch' not in run.results['refs']


@pytest.mark.parametrize('kind, name, expected, requests', [
    ('branch', 'main', [('branch', 'main')], 1),
    ('branch', 'refs/heads/release/1.x', [('branch', 'release/1.x')], 1),
    ('tag', 'v1.0.0', [('tag', 'v1.0.0')], 1),
    ('all', 'v1.0.0', [('tag', 'v1.0.0')], 2),
    ('all', 'main', [('branch', 'main')], 2),
])
def test_dc_named_ref_request_counts(kind, name, expected, requests, dc_emulator, playbook):
    dc_emulator.reset()
    run = run_dc_refs(playbook, dc_emulator, kind=kind, name=name)
    assert run.rc == 0, run
    assert [(ref['type'], ref['name']) for ref in run.results['refs']['refs']] == expected
    assert dc_emulator.stats()['requests']['api'] == requests


def test_dc_tag_resolves_to_the_tagged_commit(dc_emulator, playbook):
    run = run_dc_refs(playbook, dc_emulator, kind='tag', name='v1.0.0')
    assert run.rc == 0, run
    remote = dc_ls_remote(dc_emulator)
    assert run.results['refs']['commit'] == remote.get('refs/tags/v1.0.0^{}', remote['refs/tags/v1.0.0'])
    assert run.results['refs']['refs'][0]['date'] is None  # a tag's date would cost a request


@pytest.mark.parametrize('kind, expected, requests', [
    ('branch', {('branch', 'main'), ('branch', 'release/1.x')}, 1),
    ('tag', {('tag', 'v1.0.0')}, 2),
    ('all', {('branch', 'main'), ('branch', 'release/1.x'), ('tag', 'v1.0.0')}, 2),
])
def test_dc_listing_with_the_main_branch(kind, expected, requests, dc_emulator, playbook):
    dc_emulator.reset()
    run = run_dc_refs(playbook, dc_emulator, kind=kind)
    assert run.rc == 0, run
    assert {(ref['type'], ref['name']) for ref in run.results['refs']['refs']} == expected
    assert run.results['refs']['mainbranch'] == 'main'
    assert dc_emulator.stats()['requests']['api'] == requests


def test_dc_branch_listing_pages_when_the_server_caps_the_limit(make_emulator, dc_data, playbook):
    emu = make_emulator(flavor='datacenter', data=dict(dc_data, max_page_limit=1))
    run = run_dc_refs(playbook, emu, kind='all')
    assert run.rc == 0, run
    assert len(run.results['refs']['refs']) == 3
    assert run.results['refs']['mainbranch'] == 'main'
    assert emu.stats()['requests']['api'] == 2 + 1  # two branch pages, one tag page


@pytest.mark.parametrize('credential', ['personal', 'project', 'repository', 'basic'])
def test_dc_every_credential_kind(credential, dc_emulator, playbook, assert_no_secrets):
    run = run_dc_refs(playbook, dc_emulator, credential, verbosity=4, name='main')
    assert run.rc == 0, run
    assert run.results['refs']['commit'] == dc_ls_remote(dc_emulator)['refs/heads/main']
    assert_no_secrets(run.output, dc_emulator.stats()['tokens'] + ['alice-password-1'])


@pytest.mark.parametrize('case, credential, args, message', [
    ('missing branch', 'personal', {'name': 'mai'}, "OPS/deploy has no branch named 'mai'"),
    ('missing tag', 'personal', {'kind': 'tag', 'name': 'v9'}, "OPS/deploy has no tag named 'v9'"),
    ('missing repository', 'personal', {'repository': 'nope', 'name': 'main'}, 'HTTP 404: Repository OPS/nope does not exist.'),
    ('missing project', 'personal', {'workspace': 'NOPE', 'kind': 'all'}, 'HTTP 404: Project NOPE does not exist.'),
    ('bob and OPS', 'bob', {'name': 'main'}, 'HTTP 404: Project OPS does not exist.'),
    ('repository token, other repository', 'repository', {'repository': 'config'}, 'HTTP 404: Repository OPS/config does not exist.'),
    ('query', 'personal', {'query': 'name ~ "rel"'}, 'query is only supported on Bitbucket Cloud'),
    ('sort', 'personal', {'sort': 'name'}, 'sort is only supported on Bitbucket Cloud'),
    ('bad project key', 'personal', {'workspace': 'acme/x'}, 'workspace must be a Data Center project key'),
])
def test_dc_errors_are_clear(case, credential, args, message, dc_emulator, playbook, assert_no_secrets):
    run = run_dc_refs(playbook, dc_emulator, credential, verbosity=4, **args)
    assert run.rc != 0, (case, run)
    assert message in run.output, case
    assert 'Traceback' not in run.output
    assert_no_secrets(run.output, dc_emulator.stats()['tokens'] + ['alice-password-1'])
