"""codeferry.bitbucket.git_checkout through real ansible-playbook runs at -vvvv against the emulator.

Every run's whole output is searched for every token the emulator issued (and the workspace
token), in every encoding, failures and --diff included.
"""

import base64
import os
import subprocess

from urllib.parse import quote, quote_plus

import pytest
import requests

CONSUMER = ('demoKey1234567890ab', 'demoSecret+With/Odd=Chars0123456789')
WAT = 'ATCTT3xFfGN0acme+workspace/token='


@pytest.fixture(scope='module', name='emu')
def emu_fixture():
    """A private emulator: these tests push commits upstream."""
    from bitbucket_emulator.testing import Emulator

    with Emulator() as emulator:
        yield emulator


def mint(emu):
    response = requests.post(emu.token_url, data={'grant_type': 'client_credentials'}, auth=CONSUMER,
                             verify=emu.ca_file, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()['access_token']


def all_secret_forms(emu):
    forms = set()
    for secret in emu.stats()['tokens'] + [WAT]:
        forms.update((secret, quote(secret, safe=''), quote_plus(secret),
                      base64.b64encode(('x-token-auth:' + secret).encode()).decode()))
    return forms


def assert_no_tokens(emu, run):
    for index, form in enumerate(sorted(all_secret_forms(emu))):
        assert form not in run.output, 'a token (form #%d) leaked into the -vvvv output' % index


def checkout_task(repositories, **options):
    args = {'repositories': repositories, 'access_token': '{{ token }}', 'ca_path': '{{ ca_path }}'}
    args.update(options)
    return [{'name': 'Check out', 'codeferry.bitbucket.git_checkout': args, 'register': 'co', 'ignore_errors': True}]


def remote(emu, slug):
    helper = '!f() { echo username=x-token-auth; echo "password=$T"; }; f'
    env = dict(os.environ, T=WAT, GIT_SSL_CAINFO=emu.ca_file, GIT_TERMINAL_PROMPT='0')
    out = subprocess.run(['git', '-c', 'credential.helper=', '-c', 'credential.helper=' + helper, 'ls-remote',
                          '%s/acme/%s.git' % (emu.git_url, slug), 'refs/heads/main'],
                         env=env, capture_output=True, text=True, check=True).stdout
    return out.split('\t')[0]


def head(dest):
    return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=dest, capture_output=True, text=True, check=True).stdout.strip()


def test_cold_warm_check_and_rotation(emu, playbook, tmp_path):
    api, web = str(tmp_path / 'srv' / 'api'), str(tmp_path / 'srv' / 'web')
    pinned = remote(emu, 'api')
    repos = [{'url': emu.git_url + '/acme/api.git', 'dest': api, 'ref': 'main', 'commit': pinned},
             {'url': emu.git_url + '/acme/web.git', 'dest': web, 'ref': 'main'}]
    token = mint(emu)
    variables = {'token': token, 'ca_path': emu.ca_file}

    cold = playbook.run(checkout_task(repos), save=['co'], play_vars=variables, verbosity=4)
    assert cold.rc == 0, cold
    co = cold.results['co']
    assert co['changed'] is True and not co.get('failed')
    assert [r['action'] for r in co['repositories']] == ['cloned', 'cloned']
    assert co['repositories'][0]['after'] == pinned == head(api)
    assert co['repositories'][0]['summary'] == '%s: cloned at %s' % (api, pinned[:12]) + ', credential refreshed'
    assert_no_tokens(emu, cold)

    # Warm: no git request for the pinned one, changed=false for both.
    emu.reset()
    warm = playbook.run(checkout_task(repos[:1]), save=['co'], play_vars=variables, verbosity=4)
    assert warm.rc == 0, warm
    assert warm.results['co']['changed'] is False
    assert emu.stats()['requests']['git'] == 0
    assert_no_tokens(emu, warm)

    # Check mode with --diff after a push: the truth, and nothing changes.
    new = emu.commit('acme/api', {'pushed.txt': 'pushed\n'})
    repos[0]['commit'] = new
    check = playbook.run(checkout_task(repos[:1]), save=['co'], play_vars=variables, verbosity=4, check=True,
                         extra_args=['--diff'])
    assert check.rc == 0, check
    assert check.results['co']['changed'] is True
    assert check.results['co']['repositories'][0]['after'] == new
    assert '-commit: %s' % pinned in check.output and '+commit: %s' % new in check.output
    assert head(api) == pinned
    assert_no_tokens(emu, check)

    # A new token after the old one expired: nothing changes but the store.
    emu.expire()
    variables['token'] = mint(emu)
    repos[0]['commit'] = pinned
    rotated = playbook.run(checkout_task(repos[:1]), save=['co'], play_vars=variables, verbosity=4)
    assert rotated.rc == 0, rotated
    assert rotated.results['co']['changed'] is False
    assert rotated.results['co']['repositories'][0]['credential_refreshed'] is True
    assert_no_tokens(emu, rotated)


def test_local_work_fails_the_host_but_not_the_others(emu, playbook, tmp_path):
    work, other = str(tmp_path / 'work'), str(tmp_path / 'other')
    repos = [{'url': emu.git_url + '/acme/infra.git', 'dest': work, 'ref': 'main'},
             {'url': emu.git_url + '/acme/api.git', 'dest': other, 'ref': 'main'}]
    variables = {'token': mint(emu), 'ca_path': emu.ca_file}
    first = playbook.run(checkout_task(repos[:1]), save=['co'], play_vars=variables)
    assert first.rc == 0, first
    with open(os.path.join(work, 'README.md'), 'a') as handle:
        handle.write('edited on the host\n')
    emu.commit('acme/infra', {'README.md': '# upstream\n'})

    failed = playbook.run(checkout_task(repos), save=['co'], play_vars=variables, verbosity=4)
    co = failed.results['co']
    assert co['failed'] is True
    assert co['msg'].startswith('1 of 2 repositories failed: %s: ' % work)
    assert 'README.md' in co['msg'] and 'Traceback' not in failed.output
    refused, cloned = co['repositories']
    assert refused['action'] == 'refused' and refused['local_work']['modified'] == ['README.md']
    assert cloned['action'] == 'cloned' and cloned['failed'] is False
    assert 'edited on the host' in open(os.path.join(work, 'README.md')).read()
    assert_no_tokens(emu, failed)

    forced = playbook.run(checkout_task(repos, force=True), save=['co'], play_vars=variables, verbosity=4)
    assert forced.rc == 0, forced
    backup = forced.results['co']['repositories'][0]['backup_ref']
    assert backup.startswith('refs/codeferry/backup/')
    shown = subprocess.run(['git', 'show', backup + ':README.md'], cwd=work, capture_output=True, text=True, check=True)
    assert 'edited on the host' in shown.stdout
    assert_no_tokens(emu, forced)


def test_bad_input_is_one_clear_message(emu, playbook, tmp_path):
    repos = [{'url': 'https://x-token-auth:%s@127.0.0.1/acme/api.git' % quote(WAT, safe=''), 'dest': str(tmp_path / 'a')},
             {'url': emu.git_url + '/acme/api.git', 'dest': 'relative'}]
    run = playbook.run(checkout_task(repos), save=['co'], play_vars={'token': WAT, 'ca_path': emu.ca_file}, verbosity=4)
    co = run.results['co']
    assert co['failed'] is True
    assert 'must not contain credentials' in co['msg'] and 'must be an absolute path' in co['msg']
    assert 'Traceback' not in run.output
    assert_no_tokens(emu, run)


def test_module_documentation_renders(playbook, collections_path):
    proc = subprocess.run([os.path.join(os.path.dirname(playbook.command('x')[0]), 'ansible-doc'),
                           'codeferry.bitbucket.git_checkout'], env=playbook.env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'credential_mode' in proc.stdout and 'refs/codeferry/backup' in proc.stdout
    assert 'WARNING' not in proc.stderr, proc.stderr
