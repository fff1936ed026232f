"""git_checkout and the checkout role with transport=controller, through real ansible-playbook runs.

The hosts are local inventory entries with their own roots. The controller's mirrors are the only
git clients of the emulator in this transport, so its git counter counts the mirrors' requests:
2 per fetched repository (the ref advertisement and the pack, with the credential sent at once).
"""

import json
import os
import stat
import subprocess

import pytest

from test_checkout_role import HOSTS, grep_tree, heads, recap, role_vars, run_role, upstream
from test_git_checkout import assert_no_tokens, checkout_task, head, mint, remote
from test_oauth_token import CONSUMER

REPOSITORIES = ('api', 'web')   # what role_vars' query selects


@pytest.fixture
def emu(make_emulator):
    return make_emulator()


def controller_vars(emu, tmp_path, **extra):
    return role_vars(emu, tmp_path, checkout_transport='controller', checkout_mirror_dir=str(tmp_path / 'mirrors'),
                     **extra)


def report(tmp_path):
    """A task after the role that keeps each host's per-repository results in <tmp>/results-<host>.json."""
    return [{'name': 'Keep the results', 'changed_when': False, 'no_log': True, 'ansible.builtin.copy': {
        'content': '{{ __checkout_result.repositories | to_json }}', 'mode': '0600',
        'dest': str(tmp_path) + '/results-{{ inventory_hostname }}.json'}}]


def transfer_map(tmp_path):
    """{(host, slug): transfer} of the last run."""
    found = {}
    for host in HOSTS:
        path = tmp_path / ('results-%s.json' % host)
        if path.exists():
            for result in json.loads(path.read_text()):
                found[(host, os.path.basename(result['dest']))] = result['transfer']
            path.unlink()
    return found


def git(*args):
    return subprocess.run(['git'] + list(args), capture_output=True, text=True, check=True).stdout.strip()


def test_cold_warm_and_push_cost_two_git_requests_per_fetched_repository_and_leave_no_credential(
        emu, playbook, tmp_path, assert_no_secrets):
    variables = controller_vars(emu, tmp_path)
    emu.reset()
    cold = run_role(playbook, tmp_path, variables, after=report(tmp_path), verbosity=4)
    assert cold.returncode == 0, cold.stdout[-6000:] + cold.stderr
    requests = emu.stats()['requests']
    assert requests['token'] == 1 and requests['git'] == 2 * len(REPOSITORIES), requests
    found = heads(tmp_path)
    assert sorted(found) == sorted((host, slug) for host in HOSTS for slug in REPOSITORIES)
    assert all(commit == upstream(emu, slug) for (host, slug), commit in found.items())
    sent = transfer_map(tmp_path)
    assert len(sent) == len(HOSTS) * len(REPOSITORIES)
    for (host, slug), transfer in sent.items():
        assert transfer['kind'] == 'bundle' and transfer['prerequisites'] == [] and not transfer['shallow'], transfer
    # One bare mirror per repository, closed to other users; the token is in none of its files.
    mirrors = tmp_path / 'mirrors'
    assert stat.S_IMODE(os.stat(str(mirrors)).st_mode) == 0o700
    mirrored = sorted(path.name for path in mirrors.glob('*/acme/*.git'))
    assert mirrored == ['api.git', 'web.git']
    tokens = emu.stats()['tokens']
    assert grep_tree(str(mirrors), tokens + [CONSUMER['secret']]) == []
    for path in mirrors.glob('*/acme/*.git'):
        assert git('--git-dir', str(path), 'config', 'remote.origin.url') == '%s/acme/%s' % (emu.git_url, path.name)
    # Nothing of the credential on the hosts: no store file, no helper, a clean origin.
    assert grep_tree(str(tmp_path / 'hosts'), tokens + [CONSUMER['secret']]) == []
    for host in HOSTS:
        for slug in REPOSITORIES:
            dest = tmp_path / 'hosts' / host / slug
            assert not (dest / '.git' / 'codeferry-credentials').exists()
            assert 'credential' not in (dest / '.git' / 'config').read_text()
            assert git('-C', str(dest), 'remote', 'get-url', 'origin') == '%s/acme/%s.git' % (emu.git_url, slug)
            assert git('-C', str(dest), 'status', '--porcelain') == ''
    assert_no_secrets(cold.stdout + cold.stderr, tokens + [CONSUMER['secret']])

    emu.reset()
    warm = run_role(playbook, tmp_path, variables, after=report(tmp_path))
    assert warm.returncode == 0, warm.stdout[-6000:]
    requests = emu.stats()['requests']
    assert requests['token'] == 0 and requests['git'] == 0, requests
    assert all(counts['changed'] == '0' for counts in recap(warm.stdout).values()), recap(warm.stdout)
    assert set(transfer_map(tmp_path).values()) == {None}

    before = heads(tmp_path)
    pushed = emu.commit('acme/api', {'pushed.txt': 'one more\n'})
    emu.reset()
    after_push = run_role(playbook, tmp_path, variables, after=report(tmp_path))
    assert after_push.returncode == 0, after_push.stdout[-6000:]
    assert emu.stats()['requests']['git'] == 2, 'only the mirror of the pushed repository is fetched'
    now = heads(tmp_path)
    sent = transfer_map(tmp_path)
    for host in HOSTS:
        assert now[(host, 'api')] == pushed and now[(host, 'web')] == before[(host, 'web')]
        assert sent[(host, 'web')] is None
        assert sent[(host, 'api')]['commits'] == 1 and sent[(host, 'api')]['prerequisites'] == [before[(host, 'api')]]
    assert_no_secrets(after_push.stdout + after_push.stderr, emu.stats()['tokens'] + [CONSUMER['secret']])


def test_only_hosts_behind_get_bundles_and_those_carry_the_new_commits_only(emu, playbook, tmp_path):
    variables = controller_vars(emu, tmp_path)
    cold = run_role(playbook, tmp_path, variables, after=report(tmp_path))
    assert cold.returncode == 0, cold.stdout[-6000:]
    full = transfer_map(tmp_path)[('web1', 'api')]
    old = heads(tmp_path)[('web1', 'api')]
    emu.commit('acme/api', {'one.txt': '1\n' * 2000})
    second = emu.commit('acme/api', {'two.txt': '2\n' * 2000})
    first_host = run_role(playbook, tmp_path, variables, after=report(tmp_path), limit='web1')
    assert first_host.returncode == 0, first_host.stdout[-6000:]

    emu.reset()
    fleet = run_role(playbook, tmp_path, variables, after=report(tmp_path))
    assert fleet.returncode == 0, fleet.stdout[-6000:]
    assert emu.stats()['requests']['git'] == 0, 'the mirror already holds the pin from the web1 run'
    sent = transfer_map(tmp_path)
    assert sent[('web1', 'api')] is None and sent[('web1', 'web')] is None
    for host in ('web2', 'web3'):
        bundle = sent[(host, 'api')]
        assert bundle['commits'] == 2 and bundle['prerequisites'] == [old], bundle
        assert sent[(host, 'web')] is None
    counts = recap(fleet.stdout)
    assert counts['web1']['changed'] == '0' and counts['web2']['changed'] == '1', counts
    assert all(heads(tmp_path)[(host, 'api')] == second for host in HOSTS)
    # The incremental bundle holds the two new commits' objects only: the cold one held the whole history.
    assert sent[('web2', 'api')]['bytes'] < full['bytes'] + 200
    new_objects = subprocess.run(['git', '-C', str(tmp_path / 'hosts' / 'web2' / 'api'), 'rev-list', '--objects',
                                  second, '--not', old], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(new_objects) == 2 * 3, 'two commits, each with a tree and one new file'


def test_without_pins_each_mirror_is_fetched_once_per_run_whatever_the_number_of_hosts(emu, playbook, tmp_path):
    variables = controller_vars(emu, tmp_path, checkout_pin=False)
    emu.reset()
    cold = run_role(playbook, tmp_path, variables)
    assert cold.returncode == 0, cold.stdout[-6000:]
    assert emu.stats()['requests']['git'] == 2 * len(REPOSITORIES)
    pushed = emu.commit('acme/web', {'new.txt': 'x\n'})
    emu.reset()
    again = run_role(playbook, tmp_path, variables)
    assert again.returncode == 0, again.stdout[-6000:]
    # Every mirror is asked once (no pin to find in it); only the pushed one downloads a pack.
    assert emu.stats()['requests']['git'] == len(REPOSITORIES) + 1
    assert all(heads(tmp_path)[(host, 'web')] == pushed for host in HOSTS)


def test_module_check_mode_depth_local_work_and_warnings(emu, playbook, tmp_path):
    token = mint(emu)
    dest = str(tmp_path / 'srv' / 'api')
    mirrors = str(tmp_path / 'mirrors')
    repo = {'url': emu.git_url + '/acme/api.git', 'dest': dest, 'ref': 'main', 'depth': 1}
    variables = {'token': token, 'ca_path': str(tmp_path / 'ca.pem'), 'ca_content': open(emu.ca_file, encoding='utf-8').read()}
    task = checkout_task([repo], transport='controller', mirror_dir=mirrors, ca_content='{{ ca_content }}',
                         credential_mode='url')

    checked = playbook.run(task, save=['co'], play_vars=variables, check=True, verbosity=4, extra_args=['--diff'])
    assert checked.rc == 0, checked
    co = checked.results['co']
    assert co['changed'] and co['repositories'][0]['action'] == 'cloned' and not os.path.exists(dest)
    assert co['diff'] == [{'before_header': '%s (%s)' % (dest, repo['url']), 'after_header': '%s (%s)' % (dest, repo['url']),
                           'before': 'absent\n', 'after': 'commit: %s\n' % remote(emu, 'api')}]
    assert co['repositories'][0]['after'] == remote(emu, 'api')
    assert any('credential_mode=url is ignored' in w for w in co.get('warnings', [])), co.get('warnings')

    cloned = playbook.run(task, save=['co'], play_vars=variables, verbosity=4)
    assert cloned.rc == 0, cloned
    result = cloned.results['co']['repositories'][0]
    assert result['action'] == 'cloned' and result['transfer']['shallow'] and result['transfer']['commits'] == 1
    assert result['ref'] == 'main'
    assert git('-C', dest, 'rev-parse', '--is-shallow-repository') == 'true'
    assert git('-C', dest, 'rev-list', '--count', 'HEAD') == '1'
    assert git('-C', dest, 'remote', 'get-url', 'origin') == emu.git_url + '/acme/api.git', 'url mode is ignored'
    assert git('-C', dest, 'symbolic-ref', 'HEAD') == 'refs/heads/main'
    assert_no_tokens(emu, checked)
    assert_no_tokens(emu, cloned)

    # Local work and a push upstream: refused without force, saved with it.
    with open(os.path.join(dest, 'local.txt'), 'w', encoding='utf-8') as handle:
        handle.write('mine\n')
    tracked = sorted(name for name in os.listdir(dest) if name != '.git' and name != 'local.txt')[0]
    with open(os.path.join(dest, tracked), 'a', encoding='utf-8') as handle:
        handle.write('local change\n')
    pushed = emu.commit('acme/api', {'local.txt': 'theirs\n'})
    refused = playbook.run(task, save=['co'], play_vars=variables)
    result = refused.results['co']['repositories'][0]
    assert result['action'] == 'refused' and result['local_work']['modified'] == [tracked], result
    assert result['local_work']['untracked_in_the_way'] == ['local.txt']
    assert open(os.path.join(dest, 'local.txt'), encoding='utf-8').read() == 'mine\n'

    forced = playbook.run(checkout_task([repo], transport='controller', mirror_dir=mirrors, force=True,
                                        ca_content='{{ ca_content }}'), save=['co'], play_vars=variables)
    assert forced.rc == 0, forced
    result = forced.results['co']['repositories'][0]
    assert result['action'] == 'updated' and result['backup_ref'].startswith('refs/codeferry/backup/')
    assert head(dest) == pushed
    assert git('-C', dest, 'show', result['backup_ref'] + ':local.txt') == 'mine'


def test_archive_is_downloaded_once_for_the_fleet(emu, playbook, tmp_path):
    commit = remote(emu, 'web')
    variables = controller_vars(emu, tmp_path, checkout_method='archive', checkout_repositories=[
        {'repository': 'acme/web', 'version': commit}])
    emu.reset()
    cold = run_role(playbook, tmp_path, variables, after=report(tmp_path))
    assert cold.returncode == 0, cold.stdout[-6000:]
    requests = emu.stats()['requests']
    assert requests['archive'] == 1 and requests['git'] == 0, requests
    sent = transfer_map(tmp_path)
    assert [sent[(host, 'web')]['downloaded'] for host in HOSTS].count(True) == 1
    for host in HOSTS:
        assert (tmp_path / 'hosts' / host / 'web' / '.codeferry-archive.json').is_file()
    emu.reset()
    warm = run_role(playbook, tmp_path, variables, after=report(tmp_path))
    assert warm.returncode == 0 and emu.stats()['requests']['archive'] == 0
    assert set(transfer_map(tmp_path).values()) == {None}


@pytest.mark.parametrize('case', ['link', 'group-writable'])
def test_an_unsafe_mirror_directory_is_refused(emu, playbook, tmp_path, case):
    target = tmp_path / 'real'
    target.mkdir(mode=0o700)
    mirrors = tmp_path / 'mirrors'
    if case == 'link':
        mirrors.symlink_to(target)
    else:
        mirrors.mkdir()
        os.chmod(str(mirrors), 0o770)
    repo = {'url': emu.git_url + '/acme/api.git', 'dest': str(tmp_path / 'srv' / 'api'), 'ref': 'main'}
    run = playbook.run(checkout_task([repo], transport='controller', mirror_dir=str(mirrors)), save=['co'],
                       play_vars={'token': mint(emu), 'ca_path': emu.ca_file})
    co = run.results['co']
    assert co['failed'] and 'mirror' in co['msg'] and 'mirror_dir' in co['msg'], co['msg']
    assert 'Traceback' not in run.output
    assert os.listdir(str(target)) == []
