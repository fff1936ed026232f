"""The checkout role through real ansible-playbook runs: three local "hosts" with separate roots.

Each host is an inventory entry on localhost with its own checkout_root, so the role's controller
part (token, selection, pins) and host part (git_checkout) run as they do on a fleet. The
molecule scenarios run the same role on real podman hosts.
"""

import os
import subprocess
import sys

import pytest
import yaml

from test_oauth_token import CONSUMER
from test_ref_info import ls_remote

HOSTS = ('web1', 'web2', 'web3')
QUERY = 'project.key = "PROJ"'  # acme/api and acme/web


def role_vars(emulator, tmp_path, **extra):
    data = {
        'checkout_workspace': 'acme', 'checkout_query': QUERY,
        'checkout_client_id': CONSUMER['key'], 'checkout_client_secret': CONSUMER['secret'],
        'checkout_api_url': emulator.api_url, 'checkout_token_url': emulator.token_url,
        'checkout_git_url': emulator.git_url, 'checkout_ca_path': emulator.ca_file,
        'checkout_host_ca_path': str(tmp_path / 'host-ca' / 'ca.pem'),
        'checkout_token_cache_dir': str(tmp_path / 'cache'),
    }
    data.update(extra)
    return data


def run_role(playbook, tmp_path, variables, serial=None, after=(), verbosity=0, check=False, limit=None, extra_args=(), env=None):
    """A play of the role on HOSTS, each with checkout_root <tmp>/hosts/<host>; `after` runs after the role."""
    play = {'name': 'checkout', 'hosts': 'all', 'gather_facts': False, 'vars': variables,
            'roles': [{'role': 'codeferry.bitbucket.checkout'}], 'tasks': list(after)}
    if serial:
        play['serial'] = serial
    path = tmp_path / ('role-play-%d.yml' % (len(list(tmp_path.glob('role-play-*.yml'))) + 1))
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text(''.join('%s ansible_connection=local ansible_python_interpreter=%s checkout_root=%s\n'
                                 % (host, sys.executable, tmp_path / 'hosts' / host) for host in HOSTS))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(inventory), str(path)]
    if limit:
        argv += ['--limit', limit]
    if verbosity:
        argv.append('-' + 'v' * verbosity)
    if check:
        argv += ['--check', '--diff']
    argv += list(extra_args)
    proc = subprocess.run(argv, env=playbook.env(env), cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
                          check=False)
    return proc


def recap(output):
    counts = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[1] == ':' and parts[0] in HOSTS:
            counts[parts[0]] = dict(item.split('=') for item in parts[2:] if '=' in item)
    return counts


def heads(tmp_path):
    result = {}
    for host in HOSTS:
        root = tmp_path / 'hosts' / host
        for name in sorted(os.listdir(root)):
            result[(host, name)] = subprocess.run(['git', '-C', str(root / name), 'rev-parse', 'HEAD'], check=True,
                                                  capture_output=True, text=True).stdout.strip()
    return result


def upstream(emulator, slug):
    return ls_remote(emulator, slug)['refs/heads/main']


def grep_tree(root, secrets, skip_names=()):
    """Paths under root whose content holds one of secrets (files named in skip_names aside)."""
    hits = []
    for directory, dummy, files in os.walk(root):
        for name in files:
            if name in skip_names:
                continue
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            with open(path, 'rb') as handle:
                data = handle.read()
            hits.extend(path for secret in secrets if secret.encode() in data)
    return hits


@pytest.fixture
def emu(make_emulator):
    return make_emulator()


def test_cold_then_warm_run_one_token_same_commit_everywhere_nothing_leaked(emu, playbook, tmp_path, assert_no_secrets):
    emu.reset()
    cold = run_role(playbook, tmp_path, role_vars(emu, tmp_path), verbosity=4)
    assert cold.returncode == 0, cold.stdout[-6000:] + cold.stderr
    assert emu.stats()['requests']['token'] == 1, 'one token for the whole fleet'
    found = heads(tmp_path)
    assert sorted(found) == sorted((host, slug) for host in HOSTS for slug in ('api', 'web'))
    for (host, slug), commit in found.items():
        assert commit == upstream(emu, slug)
        origin = subprocess.run(['git', '-C', str(tmp_path / 'hosts' / host / slug), 'remote', 'get-url', 'origin'],
                                check=True, capture_output=True, text=True).stdout.strip()
        assert origin == '%s/acme/%s.git' % (emu.git_url, slug)
    tokens = emu.stats()['tokens']
    assert_no_secrets(cold.stdout + cold.stderr, tokens + [CONSUMER['secret']])
    # git_checkout itself keeps the controller's CA bundle on the host (the hosts share one path here).
    host_ca = tmp_path / 'host-ca' / 'ca.pem'
    assert host_ca.read_text().strip() == open(emu.ca_file, encoding='utf-8').read().strip()
    assert oct(os.stat(str(host_ca)).st_mode & 0o777) == '0o644'

    emu.reset()
    warm = run_role(playbook, tmp_path, role_vars(emu, tmp_path), verbosity=4)
    assert warm.returncode == 0, warm.stdout[-6000:]
    requests = emu.stats()['requests']
    assert requests['token'] == 0 and requests['git'] == 0, requests
    assert all(counts['changed'] == '0' for counts in recap(warm.stdout).values()), recap(warm.stdout)
    assert heads(tmp_path) == found
    assert_no_secrets(warm.stdout + warm.stderr, emu.stats()['tokens'] + [CONSUMER['secret']])
    # Only the store files may hold the token; .git/config never does.
    hits = grep_tree(tmp_path / 'hosts', emu.stats()['tokens'])
    assert all('credential' in os.path.basename(path) or 'store' in path for path in hits), hits
    for host in HOSTS:
        for slug in ('api', 'web'):
            config = (tmp_path / 'hosts' / host / slug / '.git' / 'config').read_text()
            assert_no_secrets(config, emu.stats()['tokens'])


def test_a_new_token_alone_changes_nothing(emu, playbook, tmp_path):
    assert run_role(playbook, tmp_path, role_vars(emu, tmp_path)).returncode == 0
    before = heads(tmp_path)
    emu.expire()
    emu.reset()
    again = run_role(playbook, tmp_path, role_vars(emu, tmp_path))
    assert again.returncode == 0, again.stdout[-6000:]
    assert emu.stats()['requests']['token'] == 1 and emu.stats()['requests']['git'] == 0
    assert all(counts['changed'] == '0' for counts in recap(again.stdout).values()), recap(again.stdout)
    assert heads(tmp_path) == before


def test_serial_batches_deploy_the_first_batch_pins_and_the_next_run_moves_on(emu, playbook, tmp_path):
    push = {'name': 'Push a commit upstream after the first batch', 'run_once': True, 'delegate_to': 'localhost',
            'when': "inventory_hostname == 'web1'",
            'ansible.builtin.uri': {'url': emu.info['base_url'] + '/_emulator/commit', 'method': 'POST',
                                    'body_format': 'json', 'ca_path': emu.ca_file,
                                    'body': {'repository': 'acme/api', 'branch': 'main',
                                             'files': {'ROLLOUT.txt': 'pushed during the rollout\n'},
                                             'message': 'Pushed during the rollout'}}}
    old = upstream(emu, 'api')
    emu.reset()
    first = run_role(playbook, tmp_path, role_vars(emu, tmp_path), serial=1, after=[push])
    assert first.returncode == 0, first.stdout[-6000:]
    assert upstream(emu, 'api') != old, 'the push must have happened'
    assert emu.stats()['requests']['token'] == 1
    assert set(commit for (host, slug), commit in heads(tmp_path).items() if slug == 'api') == {old}

    second = run_role(playbook, tmp_path, role_vars(emu, tmp_path))
    assert second.returncode == 0, second.stdout[-6000:]
    assert set(commit for (host, slug), commit in heads(tmp_path).items() if slug == 'api') == {upstream(emu, 'api')}


def test_explicit_commit_needs_no_api_request(emu, playbook, tmp_path):
    commit = upstream(emu, 'web')
    variables = role_vars(emu, tmp_path, checkout_workspace='', checkout_query='',
                          checkout_repositories=[{'repository': 'acme/web', 'version': commit,
                                                  'dest': str(tmp_path / 'pinned-web')}])
    variables.pop('checkout_workspace')
    emu.reset()
    run = run_role(playbook, tmp_path, variables, limit='web1')
    assert run.returncode == 0, run.stdout[-6000:]
    assert emu.stats()['requests']['api'] == 0
    head = subprocess.run(['git', '-C', str(tmp_path / 'pinned-web'), 'rev-parse', 'HEAD'], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert head == commit


def test_two_ways_to_authenticate_is_a_clear_error(emu, playbook, tmp_path):
    run = run_role(playbook, tmp_path, role_vars(emu, tmp_path, checkout_access_token='x' * 20))
    assert run.returncode != 0
    assert 'Set exactly one of checkout_access_token' in run.stdout


def test_local_work_fails_that_repository_and_is_kept(emu, playbook, tmp_path):
    assert run_role(playbook, tmp_path, role_vars(emu, tmp_path)).returncode == 0
    modified = tmp_path / 'hosts' / 'web2' / 'api' / 'README.md'
    modified.write_text('local edit\n')
    emu.commit('acme/api', {'README.md': 'upstream edit\n'}, branch='main', message='Upstream edit')
    run = run_role(playbook, tmp_path, role_vars(emu, tmp_path))
    assert run.returncode != 0
    counts = recap(run.stdout)
    assert counts['web2']['failed'] == '1' and counts['web1']['failed'] == '0' and counts['web3']['failed'] == '0', counts
    assert str(tmp_path / 'hosts' / 'web2' / 'api') in run.stdout and 'README.md' in run.stdout
    assert modified.read_text() == 'local edit\n'
    assert heads(tmp_path)[('web1', 'api')] == upstream(emu, 'api')


def test_a_wrong_client_secret_fails_with_the_message(emu, playbook, tmp_path, assert_no_secrets):
    run = run_role(playbook, tmp_path, role_vars(emu, tmp_path, checkout_client_secret='wrongSecret0123456789abcdef'))
    assert run.returncode != 0
    assert 'unauthorized_client' in run.stdout
    assert_no_secrets(run.stdout + run.stderr, ['wrongSecret0123456789abcdef'])


def test_checkout_pin_false_from_the_command_line_lets_each_host_fetch_its_branch(emu, playbook, tmp_path):
    """-e checkout_pin=false is the string "false": the role reads it as a boolean, and pins nothing."""
    emu.reset()
    run = run_role(playbook, tmp_path, role_vars(emu, tmp_path), extra_args=['-e', 'checkout_pin=false'])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    # The listing alone: no ref lookup per repository.
    assert emu.stats()['requests']['api'] == 1, emu.stats()['requests']
    for (host, slug), commit in heads(tmp_path).items():
        assert commit == upstream(emu, slug), (host, slug)


def test_role_variables_win_over_the_environment_and_the_environment_serves_alone(emu, playbook, tmp_path):
    """An AWX credential injects BITBUCKET_*: role variables that are set still decide; with none set, the environment does."""
    wrong = {'BITBUCKET_CLIENT_ID': 'someOtherKey0000000', 'BITBUCKET_CLIENT_SECRET': 'someOtherSecret', 'BITBUCKET_API_URL':
             'https://127.0.0.1:9/2.0', 'BITBUCKET_TOKEN_URL': 'https://127.0.0.1:9/site/oauth2/access_token'}
    emu.reset()
    run = run_role(playbook, tmp_path, role_vars(emu, tmp_path), env=wrong)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    assert emu.stats()['requests']['token'] == 1

    injected = {'BITBUCKET_CLIENT_ID': CONSUMER['key'], 'BITBUCKET_CLIENT_SECRET': CONSUMER['secret'],
                'BITBUCKET_API_URL': emu.api_url, 'BITBUCKET_TOKEN_URL': emu.token_url}
    alone = role_vars(emu, tmp_path, checkout_token_cache_dir=str(tmp_path / 'cache-2'))
    for name in ('checkout_client_id', 'checkout_client_secret', 'checkout_api_url', 'checkout_token_url'):
        del alone[name]
    emu.reset()
    run = run_role(playbook, tmp_path, alone, env=injected)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    assert emu.stats()['requests']['token'] == 1 and emu.stats()['requests']['git'] == 0, emu.stats()['requests']
    assert all(counts['changed'] == '0' for counts in recap(run.stdout).values()), recap(run.stdout)

    run = run_role(playbook, tmp_path, alone)
    assert run.returncode != 0
    assert 'from the environment: none' in run.stdout, run.stdout[-3000:]
