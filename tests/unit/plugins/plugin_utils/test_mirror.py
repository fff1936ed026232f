# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The controller transport's mirror layer, with real git on local repositories (no network)."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._git import (
    Credential, GitCheckout, GitRunner, RepoSpec, checkout_repositories)
from ansible_collections.codeferry.bitbucket.plugins.plugin_utils._mirror import (
    Mirror, MirrorLock, open_mirror_root, run_id)

SECRET = 'tok-en/with+odd=chars-0123456789'


def git(*args, cwd=None):
    env = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t', GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@t')
    return subprocess.run(['git'] + list(args), cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path):
    """A local repository with three commits on main, as a mirror would have fetched it."""
    work = tmp_path / 'work'
    git('init', '-q', '-b', 'main', str(work))
    commits = []
    for number in range(3):
        (work / ('f%d.txt' % number)).write_text('%d\n' % number)
        git('add', '.', cwd=str(work))
        git('commit', '-qm', 'c%d' % number, cwd=str(work))
        commits.append(git('rev-parse', 'HEAD', cwd=str(work)))
    git('tag', '-a', 'v1', '-m', 'v1', commits[1], cwd=str(work))
    return work, commits


def mirror_of(tmp_path, upstream_dir):
    root = open_mirror_root(str(tmp_path / 'mirrors'))
    mirror = Mirror(root, 'https://bitbucket.example/acme/api.git', GitRunner(), 'run-1')
    os.makedirs(os.path.dirname(mirror.path))
    git('clone', '-q', '--mirror', str(upstream_dir), mirror.path)
    return mirror


def test_header_auth_keeps_the_secret_in_the_environment_and_refuses_redirects():
    runner = GitRunner(Credential('x-token-auth', SECRET, 'token'), header_auth=True)
    env = runner._env(None, True, None)
    config = dict((env['GIT_CONFIG_KEY_%d' % i], env['GIT_CONFIG_VALUE_%d' % i]) for i in range(int(env['GIT_CONFIG_COUNT'])))
    assert config['http.followRedirects'] == 'false'
    assert config['http.extraHeader'].startswith('Authorization: Basic ')
    assert config['credential.helper'] == '', 'no helper: a 401 is not answered with the token'
    assert 'CODEFERRY_GIT_PASSWORD' not in env
    # The base64 form is masked too.
    assert config['http.extraHeader'][len('Authorization: Basic '):] in runner.secrets()
    assert GitRunner(Credential('x-token-auth', SECRET, 'token'))._env(None, True, None).get('CODEFERRY_GIT_PASSWORD') == SECRET


@pytest.mark.parametrize('url', ['https://bitbucket.example/acme/..', 'https://bitbucket.example/a%2fb/c.git'])
def test_mirror_names_come_only_from_plain_url_parts(tmp_path, url):
    with pytest.raises(ValidationError, match='cannot be mirrored'):
        Mirror(str(tmp_path), url, GitRunner(), 'run')


def test_mirror_path_is_host_and_repository(tmp_path):
    mirror = Mirror(str(tmp_path), 'https://Bitbucket.Example:8443/acme/api', GitRunner(), 'run')
    assert mirror.path == str(tmp_path / 'bitbucket.example_8443' / 'acme' / 'api.git')


def test_mirror_root_is_checked_like_the_token_cache(tmp_path):
    real = tmp_path / 'real'
    real.mkdir(mode=0o700)
    (tmp_path / 'link').symlink_to(real)
    with pytest.raises(ValidationError, match='mirror path .* symbolic link; set mirror_dir'):
        open_mirror_root(str(tmp_path / 'link'))
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    with pytest.raises(ValidationError, match='mirror directory .* writable by other users'):
        open_mirror_root(str(shared))
    made = open_mirror_root(str(tmp_path / 'new' / 'mirrors'))
    assert oct(os.stat(made).st_mode & 0o777) == '0o700'


def test_lock_refuses_a_planted_link(tmp_path):
    (tmp_path / 'target').write_text('')
    (tmp_path / 'm.git.lock').symlink_to(tmp_path / 'target')
    with pytest.raises(ValidationError, match='symbolic link'):
        with MirrorLock(str(tmp_path / 'm.git.lock')):
            pass


def test_run_id_names_the_parent_process():
    assert run_id().startswith('%d-' % os.getppid())


def test_bundle_from_the_hosts_commits_carries_only_what_it_lacks(tmp_path, upstream):
    work, commits = upstream
    mirror = mirror_of(tmp_path, work)
    spec = RepoSpec({'url': 'https://bitbucket.example/acme/api.git', 'dest': str(tmp_path / 'x'), 'commit': commits[2],
                     'ref': 'main'})
    assert mirror.resolve(spec) == (commits[2], 'branch', 'main'), 'the pin is there: no fetch'
    (tmp_path / 'b1').mkdir()
    incremental = mirror.bundle(str(tmp_path / 'b1'), commits[2], 'branch', 'main', [commits[0], 'f' * 40])
    assert incremental['commits'] == 2 and incremental['prerequisites'] == [commits[0]]
    (tmp_path / 'b2').mkdir()
    full = mirror.bundle(str(tmp_path / 'b2'), commits[2], 'branch', 'main', [])
    assert full['commits'] == 3 and full['bytes'] > incremental['bytes']
    (tmp_path / 'b3').mkdir()
    shallow = mirror.bundle(str(tmp_path / 'b3'), commits[2], 'branch', 'main', [], depth=1, new=True)
    assert shallow['commits'] == 1 and shallow['shallow'] == [commits[2]], 'the commit whose parents are cut off'
    (tmp_path / 'b4').mkdir()
    tag = mirror.bundle(str(tmp_path / 'b4'), commits[1], 'tag', 'v1', [])
    heads = git('bundle', 'list-heads', tag['path'], cwd=str(work))
    assert heads.split()[1] == 'refs/tags/v1' and heads.split()[0] != commits[1], 'the annotated tag object itself'
    # A host that already has the commit (going back in time) gets a bundle of the whole history.
    (tmp_path / 'b5').mkdir()
    back = mirror.bundle(str(tmp_path / 'b5'), commits[1], 'branch', 'main', [commits[2]])
    assert back['prerequisites'] == [] and back['commits'] == 2


def test_host_side_reports_what_it_has_then_takes_the_shallow_bundle(tmp_path, upstream):
    work, commits = upstream
    mirror = mirror_of(tmp_path, work)
    dest = str(tmp_path / 'host' / 'api')
    entry = {'url': 'https://bitbucket.example/acme/api.git', 'dest': dest, 'commit': commits[2], 'ref': 'refs/heads/main',
             'depth': 1}
    params = {'repositories': [entry], 'transport': 'controller', 'credential_mode': 'ephemeral', 'access_token': SECRET}
    results, changed, failures, dummy = checkout_repositories(params)
    assert results[0]['action'] == 'needs_objects' and results[0]['new'] and not failures and not changed
    assert not os.path.exists(dest)
    (tmp_path / 'b').mkdir()
    bundle = mirror.bundle(str(tmp_path / 'b'), commits[2], 'branch', 'main', [], depth=1, new=True)
    entry.update(bundle=bundle['path'], bundle_shallow=bundle['shallow'])
    results, changed, failures, dummy = checkout_repositories(params)
    assert not failures and changed and results[0]['action'] == 'cloned'
    assert git('rev-parse', 'HEAD', cwd=dest) == commits[2]
    assert git('rev-parse', '--is-shallow-repository', cwd=dest) == 'true'
    assert git('rev-parse', 'origin/main', cwd=dest) == commits[2]
    # The token given on the host is not used, nor kept.
    assert SECRET not in open(os.path.join(dest, '.git', 'config'), encoding='utf-8').read()
    assert not os.path.exists(os.path.join(dest, '.git', 'codeferry-credentials'))
    # Next time: the host names the commits it has; a bundle from the controller that lacks the commit fails cleanly.
    entry.pop('bundle')
    entry.pop('bundle_shallow')
    entry['commit'] = 'e' * 40
    results, dummy, failures, dummy = checkout_repositories(params)
    assert results[0]['action'] == 'needs_objects' and results[0]['have'] == [commits[2]] and not results[0]['new']
    entry['bundle'] = bundle['path']
    results, dummy, failures, dummy = checkout_repositories(params)
    assert results[0]['failed'] and 'bundle sent by the controller' in results[0]['msg'], results[0]['msg']
    assert git('rev-parse', 'HEAD', cwd=dest) == commits[2]


def test_bundle_and_archive_paths_must_be_absolute():
    for name in ('bundle', 'archive'):
        with pytest.raises(ValidationError, match='%s must be an absolute path' % name):
            RepoSpec({'url': 'https://b.example/a/b.git', 'dest': '/srv/b', name: 'relative/file'})
    with pytest.raises(ValidationError, match='bundle_shallow'):
        RepoSpec({'url': 'https://b.example/a/b.git', 'dest': '/srv/b', 'bundle_shallow': ['HEAD']})


def test_the_host_never_fetches_over_the_network_in_this_transport(tmp_path):
    spec = RepoSpec({'url': 'https://127.0.0.1:9/acme/api.git', 'dest': str(tmp_path / 'api'), 'ref': 'main'})
    options = {'uid': -1, 'gid': -1, 'check_mode': False, 'force': False, 'mode': None, 'credential_mode': 'ephemeral',
               'ca_path': None, 'transport': 'controller'}
    checkout = GitCheckout(spec, options, GitRunner())
    git('init', '-q', str(tmp_path / 'probe'))
    with pytest.raises(Exception) as caught:
        checkout._fetch(str(tmp_path / 'probe'))
    assert type(caught.value).__name__ == 'NeedsObjects'
