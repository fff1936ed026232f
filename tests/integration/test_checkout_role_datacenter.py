"""The checkout role against the emulator's Bitbucket Data Center flavour, through real ansible-playbook runs.

The same three local "hosts" as test_checkout_role.py. The flavour comes from checkout_api_url alone;
the role derives the git and token URLs from it.
"""

import os
import subprocess

import pytest

from test_checkout_role import HOSTS, grep_tree, heads, recap, run_role

PERSONAL = 'dc-role-personal+With/Odd=Chars0123456'
PROJECT = 'dc-role-project-fleet-0123456789abcdef'
REPOSITORY = 'dc-role-repo-lib-0123456789abcdefghij'
DATA = {
    'users': [{'username': 'deployer', 'display_name': 'Deploy Account', 'email': 'deployer@example.com',
               'tokens': [{'token': PERSONAL, 'permission': 'REPO_READ', 'name': 'deployer-read'}]}],
    'projects': [
        {'key': 'FLEET', 'name': 'Fleet', 'public': False, 'members': ['deployer'],
         'tokens': [{'token': PROJECT, 'permission': 'REPO_READ', 'name': 'fleet-read'}],
         'repositories': [{'slug': 'app', 'branches': ['main', 'release/1.x'], 'tags': ['v1.0.0']},
                          {'slug': 'lib', 'branches': ['main'],
                           'tokens': [{'token': REPOSITORY, 'permission': 'REPO_READ', 'name': 'lib-read'}]}]},
        {'key': 'OPS', 'name': 'Operations', 'public': False, 'members': ['deployer'],
         'repositories': [{'slug': 'tools', 'branches': ['main']}]},
    ],
}
SECRETS = [PERSONAL, PROJECT, REPOSITORY]


@pytest.fixture
def dc(make_emulator):
    return make_emulator(flavor='datacenter', data=DATA)


def dc_vars(emulator, tmp_path, **extra):
    data = {
        'checkout_workspace': 'FLEET', 'checkout_access_token': PROJECT,
        'checkout_api_url': emulator.api_url, 'checkout_ca_path': emulator.ca_file,
        'checkout_host_ca_path': str(tmp_path / 'host-ca' / 'ca.pem'),
        'checkout_token_cache_dir': str(tmp_path / 'cache'),
    }
    data.update(extra)
    return data


def upstream(emulator, slug):
    """The branch head as real git sees it over smart HTTP, with a Bearer header from the environment."""
    env = dict(emulator.git_env(), GIT_CONFIG_COUNT='1', GIT_CONFIG_KEY_0='http.extraHeader',
               GIT_CONFIG_VALUE_0='Authorization: Bearer ' + PROJECT)
    out = subprocess.run(['git', 'ls-remote', '%s/scm/fleet/%s.git' % (emulator.git_url, slug), 'refs/heads/main'],
                         env=env, check=True, capture_output=True, text=True).stdout
    return out.split()[0]


def git(path, *args):
    return subprocess.run(['git', '-C', str(path)] + list(args), check=True, capture_output=True, text=True).stdout.strip()


def test_project_token_cold_then_warm_no_token_request_bearer_header_kept_apart(dc, playbook, tmp_path, assert_no_secrets):
    dc.reset()
    cold = run_role(playbook, tmp_path, dc_vars(dc, tmp_path), verbosity=4)
    assert cold.returncode == 0, cold.stdout[-6000:] + cold.stderr
    requests = dc.stats()['requests']
    assert requests['token'] == 0, requests
    found = heads(tmp_path)
    assert sorted(found) == sorted((host, slug) for host in HOSTS for slug in ('app', 'lib')), 'FLEET only, not OPS/tools'
    for (host, slug), commit in found.items():
        checkout = tmp_path / 'hosts' / host / slug
        assert commit == upstream(dc, slug)
        assert git(checkout, 'remote', 'get-url', 'origin') == '%s/scm/fleet/%s.git' % (dc.git_url, slug)
        # Bearer only: no credential helper; the header is in a file of its own that .git/config includes.
        assert git(checkout, 'config', '--local', '--get-all', 'include.path') == 'codeferry-auth.config'
        header_file = checkout / '.git' / 'codeferry-auth.config'
        assert oct(os.stat(str(header_file)).st_mode & 0o777) == '0o600'
        assert PROJECT in header_file.read_text()
        assert_no_secrets((checkout / '.git' / 'config').read_text(), SECRETS + dc.stats()['tokens'])
    assert_no_secrets(cold.stdout + cold.stderr, SECRETS + dc.stats()['tokens'])
    hits = grep_tree(tmp_path / 'hosts', SECRETS)
    assert hits and all(os.path.basename(path) == 'codeferry-auth.config' for path in hits), hits

    # The owner's own git fetch works with the included header, and nothing else is needed.
    subprocess.run(['git', '-C', str(tmp_path / 'hosts' / 'web1' / 'app'), 'fetch', 'origin'],
                   env=dict(dc.git_env(), GIT_TERMINAL_PROMPT='0'), check=True, capture_output=True)

    dc.reset()
    warm = run_role(playbook, tmp_path, dc_vars(dc, tmp_path), verbosity=4)
    assert warm.returncode == 0, warm.stdout[-6000:]
    requests = dc.stats()['requests']
    assert requests['token'] == 0 and requests['git'] == 0, requests
    assert all(counts['changed'] == '0' for counts in recap(warm.stdout).values()), recap(warm.stdout)
    assert heads(tmp_path) == found
    assert_no_secrets(warm.stdout + warm.stderr, SECRETS)


def test_personal_token_as_username_and_password_ephemeral_leaves_nothing(dc, playbook, tmp_path, assert_no_secrets):
    variables = dc_vars(dc, tmp_path, checkout_workspace='', checkout_access_token='',
                        checkout_repositories=[{'repository': 'FLEET/lib'}, {'repository': 'OPS/tools', 'version': 'main'}],
                        checkout_username='deployer', checkout_password=PERSONAL, checkout_credential_mode='ephemeral')
    run = run_role(playbook, tmp_path, variables, verbosity=4)
    assert run.returncode == 0, run.stdout[-6000:]
    assert sorted(heads(tmp_path)) == sorted((host, slug) for host in HOSTS for slug in ('lib', 'tools'))
    assert grep_tree(tmp_path / 'hosts', SECRETS) == []
    assert_no_secrets(run.stdout + run.stderr, SECRETS)


def test_a_repository_token_reads_its_repository_only(dc, playbook, tmp_path, assert_no_secrets):
    variables = dc_vars(dc, tmp_path, checkout_workspace='', checkout_access_token=REPOSITORY,
                        checkout_repositories=[{'repository': 'FLEET/lib'}])
    run = run_role(playbook, tmp_path, variables)
    assert run.returncode == 0, run.stdout[-6000:]
    assert sorted(heads(tmp_path)) == sorted((host, 'lib') for host in HOSTS)

    variables['checkout_repositories'] = [{'repository': 'FLEET/app'}]
    other = run_role(playbook, tmp_path, variables)
    assert other.returncode != 0
    assert 'FLEET/app' in other.stdout
    assert 'Traceback' not in other.stdout + other.stderr
    assert_no_secrets(other.stdout + other.stderr, SECRETS)


def test_serial_batches_deploy_the_first_batch_pins(dc, playbook, tmp_path):
    push = {'name': 'Push a commit upstream after the first batch', 'run_once': True, 'delegate_to': 'localhost',
            'when': "inventory_hostname == 'web1'",
            'ansible.builtin.uri': {'url': dc.info['base_url'] + '/_emulator/commit', 'method': 'POST',
                                    'body_format': 'json', 'ca_path': dc.ca_file,
                                    'body': {'repository': 'FLEET/app', 'branch': 'main',
                                             'files': {'ROLLOUT.txt': 'pushed during the rollout\n'},
                                             'message': 'Pushed during the rollout'}}}
    old = upstream(dc, 'app')
    first = run_role(playbook, tmp_path, dc_vars(dc, tmp_path), serial=1, after=[push])
    assert first.returncode == 0, first.stdout[-6000:]
    assert upstream(dc, 'app') != old, 'the push must have happened'
    assert set(commit for (host, slug), commit in heads(tmp_path).items() if slug == 'app') == {old}

    second = run_role(playbook, tmp_path, dc_vars(dc, tmp_path))
    assert second.returncode == 0, second.stdout[-6000:]
    assert set(commit for (host, slug), commit in heads(tmp_path).items() if slug == 'app') == {upstream(dc, 'app')}


@pytest.mark.parametrize('extra, expected', [
    ({'checkout_access_token': '', 'checkout_client_id': 'dcClient0123456789',
      'checkout_client_secret': 'dcSecret0123456789abcdef'}, 'no client credentials grant'),
    ({'checkout_query': 'project.key = "FLEET"'}, 'no query language'),
    ({'checkout_credential_mode': 'url'}, 'a URL cannot carry one'),
])
def test_what_data_center_lacks_is_a_clear_error_before_any_request(dc, playbook, tmp_path, extra, expected):
    dc.reset()
    run = run_role(playbook, tmp_path, dc_vars(dc, tmp_path, **extra))
    assert run.returncode != 0
    assert expected in run.stdout, run.stdout[-3000:]
    assert 'Traceback' not in run.stdout + run.stderr
    assert sum(dc.stats()['requests'].values()) == 0, dc.stats()['requests']
    assert 'dcSecret0123456789abcdef' not in run.stdout + run.stderr
