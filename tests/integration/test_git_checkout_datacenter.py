"""codeferry.bitbucket.git_checkout against the Data Center emulator: real git, real ansible-playbook at -vvvv.

Bearer tokens (personal, project and repository HTTP access tokens) and Basic alice:<personal token>;
the store, ephemeral and url credential modes; method=archive; transport=controller. Every run's
output, every file the checkout leaves, and every git command line of the run (a recording git
wrapper first on PATH) are searched for every token the emulator knows, in every encoding.
"""

import base64
import json
import os
import stat
import subprocess

from urllib.parse import quote, quote_plus

import pytest

PERSONAL = 'dc-personal-read-0123456789abcdefghij'
BOB = 'dc-personal-bob-0123456789abcdefghijk'
PROJECT = 'dc-project-ops-read-0123456789abcdefg'
REPOSITORY = 'dc-repo-deploy-read-0123456789abcde'
PASSWORD = 'alice-password-1'
TOKENS = {'personal': PERSONAL, 'project': PROJECT, 'repository': REPOSITORY}
AUTH_FILE = 'codeferry-auth.config'
STORE_FILE = 'codeferry-credentials'


@pytest.fixture(scope='module', name='emu')
def emu_fixture():
    """A private Data Center emulator: these tests push commits upstream."""
    from bitbucket_emulator.testing import Emulator

    with Emulator(flavor='datacenter') as emulator:
        yield emulator


class Argv(object):
    """A git wrapper first on PATH that appends every argv it is run with to a log, then runs git."""

    def __init__(self, tmp_path):
        self.bin = tmp_path / 'bin'
        self.bin.mkdir()
        self.log = tmp_path / 'git-argv.log'
        self.log.touch()
        real = subprocess.run(['sh', '-c', 'command -v git'], capture_output=True, text=True, check=True).stdout.strip()
        wrapper = self.bin / 'git'
        wrapper.write_text('#!/bin/sh\nprintf "%%s\\n" "$*" >> %s\nexec %s "$@"\n' % (self.log, real))
        wrapper.chmod(0o755)

    def env(self):
        return {'PATH': '%s:%s' % (self.bin, os.environ.get('PATH', ''))}

    def text(self):
        return self.log.read_text()


def secret_forms(emu):
    forms = set()
    for secret in set(emu.stats()['tokens']) | {PERSONAL, BOB, PROJECT, REPOSITORY, PASSWORD}:
        forms.update((secret, quote(secret, safe=''), quote_plus(secret)))
        for user in ('alice', 'bob', 'x-token-auth'):
            forms.add(base64.b64encode(('%s:%s' % (user, secret)).encode()).decode())
    return sorted(forms)


def assert_clean(emu, text, what):
    for index, form in enumerate(secret_forms(emu)):
        assert form not in text, 'a secret (form #%d) leaked into %s' % (index, what)


def files_with_secrets(emu, root):
    """Files under root holding a secret; the test's own playbook variables and saved results aside."""
    needles = [form.encode() for form in secret_forms(emu)]
    hits = []
    for directory, dummy, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(directory, name)
            if directory == str(root) and name.startswith(('vars-', 'results-')):
                continue
            if not os.path.islink(path):
                with open(path, 'rb') as handle:
                    data = handle.read()
                if any(needle in data for needle in needles):
                    hits.append(path)
    return sorted(hits)


def git_env(emu, token=None):
    """Plain git of a user, trusting the emulator's CA; with token, given as a Bearer header in the environment."""
    env = dict(os.environ, GIT_SSL_CAINFO=emu.ca_file, GIT_TERMINAL_PROMPT='0', LC_ALL='C')
    if token:
        env.update(GIT_CONFIG_COUNT='1', GIT_CONFIG_KEY_0='http.extraHeader',
                   GIT_CONFIG_VALUE_0='Authorization: Bearer ' + token)
    return env


def git(cwd, *args, check=True, env=None):
    proc = subprocess.run(['git'] + list(args), cwd=str(cwd), env=env, capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, 'git %s: %s' % (' '.join(args), proc.stderr)
        return proc.stdout.strip()
    return proc


def url(emu, slug='deploy', key='ops'):
    return '%s/scm/%s/%s.git' % (emu.git_url, key, slug)


def upstream(emu, slug='deploy', ref='refs/heads/main'):
    out = git('/', 'ls-remote', url(emu, slug), ref, env=git_env(emu, PROJECT))
    return out.split('\t')[0]


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def run(playbook, emu, argv, repositories, verbosity=4, **options):
    args = {'flavor': 'datacenter', 'repositories': repositories, 'ca_path': emu.ca_file}
    variables = {}
    for name in ('access_token', 'password'):
        if name in options:
            variables[name] = options.pop(name)
            args[name] = '{{ %s }}' % name
    args.update(options)
    tasks = [{'name': 'Check out', 'codeferry.bitbucket.git_checkout': args, 'register': 'co', 'ignore_errors': True,
              'no_log': False}]
    result = playbook.run(tasks, save=['co'], play_vars=variables, verbosity=verbosity, env=argv.env())
    assert_clean(emu, result.output, 'the -vvvv output')
    assert_clean(emu, argv.text(), 'a git command line')
    return result


def assert_secret_free_config(emu, dest):
    config = (dest / '.git' / 'config').read_text()
    assert_clean(emu, config, '.git/config')
    return config


@pytest.mark.parametrize('kind', sorted(TOKENS))
def test_bearer_store_clone_warm_update_and_the_owners_fetch(emu, playbook, tmp_path, kind):
    argv = Argv(tmp_path)
    token = TOKENS[kind]
    dest = tmp_path / 'deploy'
    pinned = upstream(emu)
    repos = [{'url': url(emu), 'dest': str(dest), 'ref': 'main', 'commit': pinned}]

    cold = run(playbook, emu, argv, repos, access_token=token)
    assert cold.rc == 0, cold
    result = cold.results['co']['repositories'][0]
    assert result['action'] == 'cloned' and result['after'] == pinned and result['credential_refreshed'] is True
    assert git(dest, 'rev-parse', 'HEAD') == pinned
    auth = dest / '.git' / AUTH_FILE
    assert mode_of(auth) == 0o600 and os.stat(str(auth)).st_uid == os.geteuid()
    assert auth.read_text() == '[http "%s/"]\n\textraHeader = "Authorization: Bearer %s"\n' % (emu.git_url, token)
    config = assert_secret_free_config(emu, dest)
    assert git(dest, 'config', '--local', '--get-all', 'include.path') == AUTH_FILE
    assert git(dest, 'config', 'remote.origin.url') == url(emu)
    assert not (dest / '.git' / STORE_FILE).exists() and 'credential' not in config
    assert files_with_secrets(emu, dest) == [str(auth)]

    # Warm: pinned and there, no git request at all, nothing rewritten.
    emu.reset()
    before = os.stat(str(auth))
    warm = run(playbook, emu, argv, repos, access_token=token)
    assert warm.rc == 0, warm
    assert warm.results['co']['changed'] is False
    assert warm.results['co']['repositories'][0]['credential_refreshed'] is False
    assert emu.stats()['requests']['git'] == 0
    after = os.stat(str(auth))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # A push upstream, then an update to it.
    new = emu.commit('OPS/deploy', {'dc-%s.txt' % kind: kind + '\n'})
    repos[0]['commit'] = new
    updated = run(playbook, emu, argv, repos, access_token=token)
    assert updated.rc == 0, updated
    assert updated.results['co']['repositories'][0]['action'] == 'updated'
    assert git(dest, 'rev-parse', 'HEAD') == new

    # The owner's own git, with only what the module left: the include carries the header.
    newer = emu.commit('OPS/deploy', {'later-%s.txt' % kind: 'l\n'})
    git(dest, 'fetch', '-q', env=git_env(emu))
    assert git(dest, 'rev-parse', 'origin/main') == newer
    assert 'fetch' in argv.text()


def test_a_new_token_rewrites_the_include_file_and_reports_only_the_refresh(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    dest = tmp_path / 'rotate'
    pinned = upstream(emu)
    repos = [{'url': url(emu), 'dest': str(dest), 'commit': pinned}]
    assert run(playbook, emu, argv, repos, access_token=PROJECT).rc == 0
    emu.reset()
    rotated = run(playbook, emu, argv, repos, access_token=REPOSITORY)
    assert rotated.rc == 0, rotated
    co = rotated.results['co']
    assert co['changed'] is False and co['repositories'][0]['credential_refreshed'] is True
    assert emu.stats()['requests']['git'] == 0
    text = (dest / '.git' / AUTH_FILE).read_text()
    assert REPOSITORY in text and PROJECT not in text
    assert mode_of(dest / '.git' / AUTH_FILE) == 0o600
    assert git(dest, 'config', '--local', '--get-all', 'include.path') == AUTH_FILE


def test_basic_personal_token_then_bearer_then_ephemeral_each_removes_what_the_last_left(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    dest = tmp_path / 'switch'
    pinned = upstream(emu)
    repos = [{'url': url(emu), 'dest': str(dest), 'ref': 'main', 'commit': pinned}]

    basic = run(playbook, emu, argv, repos, username='alice', password=PERSONAL)
    assert basic.rc == 0, basic
    store = dest / '.git' / STORE_FILE
    assert mode_of(store) == 0o600 and store.read_text().startswith('https://alice:')
    assert not (dest / '.git' / AUTH_FILE).exists()
    assert files_with_secrets(emu, dest) == [str(store)]
    assert git(dest, 'config', '--local', '--get-all', 'include.path', check=False).stdout == ''
    git(dest, 'fetch', '-q', env=git_env(emu))

    bearer = run(playbook, emu, argv, repos, access_token=PROJECT)
    assert bearer.rc == 0, bearer
    assert bearer.results['co']['changed'] is False
    assert bearer.results['co']['repositories'][0]['credential_refreshed'] is True
    assert not store.exists()
    assert git(dest, 'config', '--local', '--get-regexp', 'credential', check=False).stdout == ''
    assert files_with_secrets(emu, dest) == [str(dest / '.git' / AUTH_FILE)]
    # git's own fetch as the owner works with the include alone.
    git(dest, 'fetch', '-q', env=git_env(emu))

    # The other flavour on the same checkout (pinned, so no network): the Cloud store replaces the include.
    cloud = run(playbook, emu, argv, repos, access_token=PROJECT, flavor='cloud')
    assert cloud.rc == 0, cloud
    assert cloud.results['co']['repositories'][0]['credential_refreshed'] is True
    assert store.read_text().startswith('https://x-token-auth:')
    assert not (dest / '.git' / AUTH_FILE).exists()
    assert git(dest, 'config', '--local', '--get-all', 'include.path', check=False).stdout == ''

    ephemeral = run(playbook, emu, argv, repos, access_token=PROJECT, credential_mode='ephemeral')
    assert ephemeral.rc == 0, ephemeral
    assert ephemeral.results['co']['repositories'][0]['credential_refreshed'] is True
    assert not (dest / '.git' / AUTH_FILE).exists()
    assert git(dest, 'config', '--local', '--get-all', 'include.path', check=False).stdout == ''
    assert files_with_secrets(emu, tmp_path) == []
    assert_secret_free_config(emu, dest)


def test_ephemeral_leaves_nothing_and_the_owner_cannot_fetch(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    dest = tmp_path / 'ephemeral'
    result = run(playbook, emu, argv, [{'url': url(emu, 'config'), 'dest': str(dest), 'ref': 'main'}],
                 access_token=PROJECT, credential_mode='ephemeral')
    assert result.rc == 0, result
    assert result.results['co']['repositories'][0]['action'] == 'cloned'
    assert not (dest / '.git' / AUTH_FILE).exists() and not (dest / '.git' / STORE_FILE).exists()
    assert git(dest, 'config', '--local', '--get-regexp', r'^(include|credential)\.', check=False).stdout == ''
    assert files_with_secrets(emu, tmp_path) == []
    assert git(dest, 'fetch', '-q', check=False, env=git_env(emu)).returncode != 0


def test_url_mode_with_a_bearer_token_is_refused_before_any_work(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    dest = tmp_path / 'url'
    emu.reset()
    result = run(playbook, emu, argv, [{'url': url(emu), 'dest': str(dest), 'ref': 'main'}],
                 access_token=REPOSITORY, credential_mode='url')
    co = result.results['co']
    assert co['failed'] is True
    assert 'git cannot carry a Bearer token in a URL' in co['msg']
    assert 'credential_mode=store or ephemeral' in co['msg'] and 'username and password' in co['msg']
    assert 'Traceback' not in result.output
    assert not dest.exists() and emu.stats()['requests']['git'] == 0
    # A personal token as username and password may go into the URL: the user asked for it.
    basic = run(playbook, emu, argv, [{'url': url(emu), 'dest': str(dest), 'ref': 'main'}],
                username='alice', password=PERSONAL, credential_mode='url')
    assert basic.rc == 0, basic
    assert git(dest, 'config', 'remote.origin.url') == url(emu).replace('https://', 'https://alice:%s@' % PERSONAL)
    assert mode_of(dest / '.git' / 'config') == 0o600


def test_the_repository_token_reads_its_repository_only(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    repos = [{'url': url(emu, 'deploy'), 'dest': str(tmp_path / 'deploy'), 'ref': 'main'},
             {'url': url(emu, 'config'), 'dest': str(tmp_path / 'config'), 'ref': 'main'}]
    result = run(playbook, emu, argv, repos, access_token=REPOSITORY)
    co = result.results['co']
    assert co['failed'] is True
    deploy, config = co['repositories']
    assert deploy['action'] == 'cloned' and deploy['failed'] is False
    assert config['action'] == 'failed' and str(tmp_path / 'config') in co['msg']
    assert not (tmp_path / 'config').exists()


@pytest.mark.parametrize('credential', ['bearer', 'basic'])
def test_archive_method(emu, playbook, tmp_path, credential):
    argv = Argv(tmp_path)
    dest = tmp_path / 'archive'
    pinned = upstream(emu)
    repos = [{'url': url(emu), 'dest': str(dest), 'commit': pinned}]
    options = {'access_token': PROJECT} if credential == 'bearer' else {'username': 'alice', 'password': PERSONAL}
    emu.reset()
    first = run(playbook, emu, argv, repos, method='archive', **dict(options))
    assert first.rc == 0, first
    assert first.results['co']['repositories'][0]['action'] == 'cloned'
    assert emu.stats()['requests']['git'] == 0
    assert json.loads((dest / '.codeferry-archive.json').read_text()) == {'commit': pinned, 'url': url(emu)}
    assert not (dest / '.git').exists() and len(os.listdir(str(dest))) > 1
    assert files_with_secrets(emu, tmp_path) == []
    again = run(playbook, emu, argv, repos, method='archive', **dict(options))
    assert again.rc == 0 and again.results['co']['changed'] is False


def test_archive_of_a_url_that_is_not_a_data_center_clone_url_fails_clearly(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    repos = [{'url': emu.git_url + '/ops/deploy.git', 'dest': str(tmp_path / 'odd'), 'commit': 'a' * 40}]
    result = run(playbook, emu, argv, repos, method='archive', access_token=PROJECT)
    co = result.results['co']
    assert co['failed'] is True and 'is not a Bitbucket Data Center clone URL' in co['msg']
    assert 'Traceback' not in result.output


def controller_options(emu, tmp_path, **extra):
    # The controller's git trusts ca_content (the CA the host gets too), not the host's ca_path.
    with open(emu.ca_file, encoding='utf-8') as handle:
        ca = handle.read()
    return dict(transport='controller', mirror_dir=str(tmp_path / 'mirrors'), ca_content=ca,
                ca_path=str(tmp_path / 'host-ca.pem'), **extra)


@pytest.mark.parametrize('method', ['git', 'archive'])
def test_controller_transport(emu, playbook, tmp_path, method):
    argv = Argv(tmp_path)
    dest = tmp_path / 'host' / 'deploy'
    pinned = upstream(emu)
    repos = [{'url': url(emu), 'dest': str(dest), 'ref': 'main', 'commit': pinned}]
    options = controller_options(emu, tmp_path, method=method)
    emu.reset()
    cold = run(playbook, emu, argv, repos, access_token=REPOSITORY, **dict(options))
    assert cold.rc == 0, cold
    result = cold.results['co']['repositories'][0]
    assert result['action'] == 'cloned', result.get('msg')
    assert result['transfer']['kind'] == ('bundle' if method == 'git' else 'archive')
    if method == 'git':
        # The mirror's fetch: the ref advertisement and the pack, the Bearer header sent at once.
        assert emu.stats()['requests']['git'] == 2
        assert git(dest, 'rev-parse', 'HEAD') == pinned
        assert not (dest / '.git' / AUTH_FILE).exists() and not (dest / '.git' / STORE_FILE).exists()
        assert git(dest, 'config', 'remote.origin.url') == url(emu)
    assert files_with_secrets(emu, tmp_path / 'host') == []
    assert files_with_secrets(emu, tmp_path / 'mirrors') == []
    emu.reset()
    warm = run(playbook, emu, argv, repos, access_token=REPOSITORY, **dict(options))
    assert warm.rc == 0 and warm.results['co']['changed'] is False
    assert emu.stats()['requests']['git'] == 0


def test_controller_transport_with_basic_and_a_refused_token(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    dest = tmp_path / 'host' / 'config'
    options = controller_options(emu, tmp_path)
    repos = [{'url': url(emu, 'config'), 'dest': str(dest), 'ref': 'main'}]
    ok = run(playbook, emu, argv, repos, username='alice', password=PERSONAL, **dict(options))
    assert ok.rc == 0, ok
    assert git(dest, 'rev-parse', 'HEAD') == upstream(emu, 'config')
    # Bob's token cannot read OPS: a clear failure, and bob's token in no output.
    refused = run(playbook, emu, argv, [{'url': url(emu, 'deploy'), 'dest': str(tmp_path / 'host' / 'd'), 'ref': 'main'}],
                  access_token=BOB, **dict(options))
    assert refused.results['co']['failed'] is True
    assert 'Traceback' not in refused.output


def test_a_data_center_url_with_the_default_flavor_says_to_set_it(emu, playbook, tmp_path):
    argv = Argv(tmp_path)
    dest = tmp_path / 'cloud'
    result = run(playbook, emu, argv, [{'url': url(emu), 'dest': str(dest), 'ref': 'main'}],
                 access_token=PROJECT, flavor='cloud')
    co = result.results['co']
    assert co['failed'] is True and 'Traceback' not in result.output
    assert "the URL looks like Bitbucket Data Center's (/scm/): set flavor: datacenter" in co['msg']
    assert not dest.exists()
