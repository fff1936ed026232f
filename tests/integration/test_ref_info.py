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
