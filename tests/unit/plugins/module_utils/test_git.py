# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_git.py against real git repositories served over HTTPS by the emulator: no mocks of git.

Each test checks out into its own tmp_path. The emulator is private to this module, because
the tests push commits upstream (POST /_emulator/commit).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from git_helpers import WAT, World, files_containing, mint_token, mode_of, world_readable_dir

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _git


@pytest.fixture(scope='module', name='emu')
def emu_fixture():
    from bitbucket_emulator.testing import Emulator

    with Emulator() as emulator:
        yield emulator


@pytest.fixture(scope='module', name='public_dir')
def public_dir_fixture():
    """A directory every user can enter: checkouts owned by nobody must be reachable by nobody."""
    path = world_readable_dir('codeferry-git-test-')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module', name='ca_file')
def ca_file_fixture(emu, public_dir):
    path = os.path.join(public_dir, 'ca.pem')
    shutil.copyfile(emu.ca_file, path)
    os.chmod(path, 0o644)
    return path


@pytest.fixture(name='world')
def world_fixture(emu, ca_file, tmp_path):
    return World(emu, ca_file, tmp_path)


def assert_ok(result, action):
    assert result['failed'] is False, result.get('msg')
    assert result['action'] == action, result


# ---------------------------------------------------------------- cold, warm, update


def test_cold_clone_pinned_on_a_branch(world, tmp_path):
    dest = str(tmp_path / 'api')
    commit = world.remote('api')
    result = world.one(url=world.url('api'), dest=dest, ref='main', commit=commit)
    assert_ok(result, 'cloned')
    assert result['changed'] is True and result['before'] is None and result['after'] == commit
    assert world.git(dest, 'rev-parse', 'HEAD') == commit
    # On a local branch named after ref, tracking the remote one, so the owner's git pull works.
    assert world.git(dest, 'symbolic-ref', 'HEAD') == 'refs/heads/main'
    assert world.git(dest, 'rev-parse', '--abbrev-ref', 'main@{upstream}') == 'origin/main'
    assert world.git(dest, 'config', 'remote.origin.url') == world.url('api')
    assert world.git(dest, 'status', '--porcelain') == ''
    # Nothing is left beside dest.
    assert sorted(os.listdir(str(tmp_path))) == ['api', 'bin', 'git-argv.log', 'home']


def test_warm_run_makes_no_git_request(world, tmp_path):
    dest = str(tmp_path / 'api')
    commit = world.remote('api')
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main', commit=commit), 'cloned')
    world.emu.reset()
    results, changed, failures = world.run([{'url': world.url('api'), 'dest': dest, 'ref': 'main', 'commit': commit}])
    assert failures == [] and changed is False
    assert_ok(results[0], 'unchanged')
    assert results[0]['credential_refreshed'] is False and results[0]['before'] == commit
    assert world.git_requests() == 0
    assert not any(line in ('fetch', 'ls-remote', 'clone') for line in world.argv().splitlines()[-40:])


def test_update_to_a_new_upstream_commit(world, tmp_path):
    dest = str(tmp_path / 'web')
    old = world.remote('web')
    assert_ok(world.one(url=world.url('web'), dest=dest, ref='main', commit=old), 'cloned')
    new = world.emu.commit('acme/web', {'release.txt': 'new release\n'})
    world.emu.reset()
    result = world.one(url=world.url('web'), dest=dest, ref='main', commit=new)
    assert_ok(result, 'updated')
    assert (result['before'], result['after'], result['changed']) == (old, new, True)
    assert world.git(dest, 'rev-parse', 'HEAD') == new
    assert open(os.path.join(dest, 'release.txt')).read() == 'new release\n'
    assert world.git(dest, 'symbolic-ref', 'HEAD') == 'refs/heads/main'
    assert 0 < world.git_requests() <= 4


def test_ref_without_commit_follows_the_branch(world, tmp_path):
    dest = str(tmp_path / 'infra')
    first = world.one(url=world.url('infra'), dest=dest, ref='main')
    assert_ok(first, 'cloned')
    assert first['after'] == world.remote('infra')
    again = world.one(url=world.url('infra'), dest=dest, ref='main')
    assert_ok(again, 'unchanged')
    assert again['changed'] is False
    new = world.emu.commit('acme/infra', {'moved.txt': 'x\n'})
    moved = world.one(url=world.url('infra'), dest=dest, ref='main')
    assert_ok(moved, 'updated')
    assert moved['after'] == new == world.git(dest, 'rev-parse', 'HEAD')


def test_tag_is_checked_out_detached(world, tmp_path):
    dest = str(tmp_path / 'web-tag')
    result = world.one(url=world.url('web'), dest=dest, ref='v2.3.0')
    assert_ok(result, 'cloned')
    assert world.git(dest, 'symbolic-ref', '-q', 'HEAD', check=False).returncode == 1
    assert world.git(dest, 'rev-parse', 'HEAD') == world.git(dest, 'rev-parse', 'v2.3.0^{commit}')
    assert result['after'] == world.git(dest, 'rev-parse', 'HEAD')


def test_commit_only_is_detached_and_default_branch_without_either(world, tmp_path):
    commit = world.remote('api', 'refs/heads/release/1.x')
    dest = str(tmp_path / 'pinned')
    assert_ok(world.one(url=world.url('api'), dest=dest, commit=commit), 'cloned')
    assert world.git(dest, 'rev-parse', 'HEAD') == commit
    assert world.git(dest, 'symbolic-ref', '-q', 'HEAD', check=False).returncode == 1
    dest2 = str(tmp_path / 'default')
    result = world.one(url=world.url('api'), dest=dest2)
    assert_ok(result, 'cloned')
    assert result['after'] == world.remote('api', 'HEAD')


def test_depth_makes_a_shallow_clone_that_stays_shallow(world, tmp_path):
    dest = str(tmp_path / 'shallow')
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main', depth=1), 'cloned')
    assert world.git(dest, 'rev-parse', '--is-shallow-repository') == 'true'
    assert world.git(dest, 'rev-list', '--count', 'HEAD') == '1'
    new = world.emu.commit('acme/api', {'shallow.txt': 'y\n'})
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main', commit=new, depth=1), 'updated')
    assert world.git(dest, 'rev-parse', 'HEAD') == new
    assert world.git(dest, 'rev-parse', '--is-shallow-repository') == 'true'


def test_an_existing_clone_of_the_same_repository_is_adopted(world, tmp_path):
    dest = str(tmp_path / 'own-clone')
    world.git(str(tmp_path), '-c', 'http.sslCAInfo=' + world.emu.ca_file, 'clone', '-q',
              world.url('docs'), dest)  # a public repository: no credential needed
    commit = world.remote('docs', 'refs/heads/master')
    result = world.one(url=world.url('docs').replace('.git', ''), dest=dest, ref='master', commit=commit)
    assert_ok(result, 'unchanged')
    assert result['changed'] is False


# ---------------------------------------------------------------- local work


def make_work(world, dest, kind):
    """Put one kind of local work into the checkout at dest; returns what must survive."""
    if kind == 'modified':
        with open(os.path.join(dest, 'README.md'), 'a') as handle:
            handle.write('local edit\n')
        return {'README.md'}
    if kind == 'staged':
        with open(os.path.join(dest, 'staged.txt'), 'w') as handle:
            handle.write('staged\n')
        world.git(dest, 'add', 'staged.txt')
        return {'staged.txt'}
    if kind == 'local_commit':
        with open(os.path.join(dest, 'hotfix.txt'), 'w') as handle:
            handle.write('hotfix\n')
        world.git(dest, 'add', 'hotfix.txt')
        world.git(dest, 'commit', '-q', '-m', 'Hotfix on the server')
        return {'hotfix.txt'}
    raise AssertionError(kind)


@pytest.mark.parametrize('kind, key', [('modified', 'modified'), ('staged', 'staged'), ('local_commit', 'local_commits'),
                                       ('untracked_in_the_way', 'untracked_in_the_way')])
def test_local_work_is_refused_then_saved_by_force(world, tmp_path, kind, key):
    dest = str(tmp_path / 'work')
    other = str(tmp_path / 'other')
    slug = 'svc-%03d' % {'modified': 1, 'staged': 2, 'local_commit': 3, 'untracked_in_the_way': 4}[kind]
    old = world.remote(slug)
    assert_ok(world.one(url=world.url(slug), dest=dest, ref='main', commit=old), 'cloned')
    if kind == 'untracked_in_the_way':
        with open(os.path.join(dest, 'incoming.txt'), 'w') as handle:
            handle.write('my notes\n')
        survivors = {'incoming.txt'}
    else:
        survivors = make_work(world, dest, kind)
    snapshot = {name: open(os.path.join(dest, name)).read() for name in survivors}
    head_before = world.git(dest, 'rev-parse', 'HEAD')
    new = world.emu.commit('acme/' + slug, {'incoming.txt': 'upstream content\n', 'README.md': '# upstream\n'})

    repos = [{'url': world.url(slug), 'dest': dest, 'ref': 'main', 'commit': new},
             {'url': world.url('api'), 'dest': other, 'ref': 'main'}]
    results, changed, failures = world.run(repos)
    refused, fine = results
    assert refused['failed'] is True and refused['action'] == 'refused'
    assert refused['changed'] is False and refused['backup_ref'] is None
    assert dest in refused['msg'] and 'force=true' in refused['msg']
    assert refused['local_work'][key], refused['local_work']
    assert len(failures) == 1 and failures[0].startswith(dest + ': ')
    # The other repository of the same run went on.
    assert_ok(fine, 'cloned')
    assert changed is True
    # Nothing was touched.
    assert world.git(dest, 'rev-parse', 'HEAD') == head_before
    assert {name: open(os.path.join(dest, name)).read() for name in survivors} == snapshot

    forced, = world.run(repos[:1], force=True)[0]
    assert_ok(forced, 'updated')
    backup = forced['backup_ref']
    assert backup.startswith('refs/codeferry/backup/') and backup.endswith('Z')
    assert world.git(dest, 'rev-parse', 'HEAD') == new
    assert world.git(dest, 'status', '--porcelain', '--untracked-files=no') == ''
    assert world.git(dest, 'rev-parse', backup + '^') == head_before
    # Restoring from the backup ref gives the work back.
    for name, content in snapshot.items():
        assert world.git(dest, 'show', '%s:%s' % (backup, name)) + '\n' == content
    world.git(dest, 'restore', '--source=' + backup, '--', '.')
    assert {name: open(os.path.join(dest, name)).read() for name in survivors} == snapshot
    if kind == 'local_commit':
        assert world.git(dest, 'log', '-1', '--format=%s', backup + '^') == 'Hotfix on the server'


def test_untracked_files_not_in_the_way_stay_and_do_not_block(world, tmp_path):
    dest = str(tmp_path / 'untracked')
    assert_ok(world.one(url=world.url('svc-005'), dest=dest, ref='main'), 'cloned')
    for name in ('notes.txt', os.path.join('build', 'out.bin')):
        os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
        with open(os.path.join(dest, name), 'w') as handle:
            handle.write('mine\n')
    new = world.emu.commit('acme/svc-005', {'src/new.py': 'print(1)\n'})
    result = world.one(url=world.url('svc-005'), dest=dest, ref='main', commit=new)
    assert_ok(result, 'updated')
    assert result['backup_ref'] is None
    assert open(os.path.join(dest, 'notes.txt')).read() == 'mine\n'
    assert open(os.path.join(dest, 'build', 'out.bin')).read() == 'mine\n'


def test_an_ignored_file_in_the_way_and_a_file_where_a_directory_comes(world, tmp_path):
    slug = 'svc-006'
    dest = str(tmp_path / 'ignored')
    assert_ok(world.one(url=world.url(slug), dest=dest, ref='main'), 'cloned')
    with open(os.path.join(dest, '.git', 'info', 'exclude'), 'a') as handle:
        handle.write('secret.env\n')
    with open(os.path.join(dest, 'secret.env'), 'w') as handle:
        handle.write('KEEP=1\n')
    with open(os.path.join(dest, 'conf'), 'w') as handle:
        handle.write('a file where upstream adds a directory\n')
    new = world.emu.commit('acme/' + slug, {'secret.env': 'UPSTREAM=1\n', 'conf/app.yml': 'x: 1\n'})
    refused = world.one(url=world.url(slug), dest=dest, ref='main', commit=new)
    assert refused['action'] == 'refused'
    assert refused['local_work']['untracked_in_the_way'] == ['conf', 'secret.env']
    forced = world.one(url=world.url(slug), dest=dest, ref='main', commit=new, force=True)
    assert_ok(forced, 'updated')
    assert world.git(dest, 'show', forced['backup_ref'] + ':secret.env') == 'KEEP=1'
    assert world.git(dest, 'show', forced['backup_ref'] + ':conf').startswith('a file where')
    assert open(os.path.join(dest, 'conf', 'app.yml')).read() == 'x: 1\n'


def test_commits_that_were_pushed_are_not_local_work(world, tmp_path):
    """A commit the module checked out by hash alone (no remote-tracking ref holds it) is not "local"."""
    slug = 'svc-007'
    dest = str(tmp_path / 'pushed')
    first = world.remote(slug)
    assert_ok(world.one(url=world.url(slug), dest=dest, commit=first), 'cloned')
    second = world.emu.commit('acme/' + slug, {'two.txt': '2\n'})
    assert_ok(world.one(url=world.url(slug), dest=dest, commit=second), 'updated')
    assert_ok(world.one(url=world.url(slug), dest=dest, commit=first), 'updated')


# ---------------------------------------------------------------- credentials


def test_store_mode_leaves_the_token_only_in_the_store_file(world, tmp_path):
    world.token = mint_token(world.emu)
    dest = str(tmp_path / 'store')
    result = world.one(url=world.url('api'), dest=dest, ref='main')
    assert_ok(result, 'cloned')
    store = os.path.join(dest, '.git', 'codeferry-credentials')
    assert mode_of(store) == 0o600
    assert open(store).read() == 'https://x-token-auth:%s@%s\n' % (
        _git._store_quote(world.token), _git._store_quote(world.emu.git_url.split('//')[1]))
    assert files_containing(dest, [world.token], skip={store}) == []
    assert world.token not in world.argv()
    assert world.git(dest, 'config', 'remote.origin.url') == world.url('api')
    helper = world.git(dest, 'config', '--local', '--get-regexp', r'^credential\..*\.helper$')
    assert helper == 'credential.%s.helper store --file %s' % (world.emu.git_url, store)
    # The owner's own git fetch works with what the module left (and the CA it was given).
    world.emu.commit('acme/api', {'later.txt': 'later\n'})
    world.git(dest, 'fetch', '-q')
    assert world.git(dest, 'rev-parse', 'origin/main') == world.remote('api')
    # ... and git's own rewrite of the store file keeps it byte for byte.
    assert open(store).read().count(world.token.replace('+', '%2b').replace('/', '%2f').replace('=', '%3d')) == 1


def test_a_new_token_refreshes_the_store_without_a_change(world, tmp_path):
    dest = str(tmp_path / 'rotate')
    world.token = mint_token(world.emu)
    commit = world.remote('infra')
    assert_ok(world.one(url=world.url('infra'), dest=dest, ref='main', commit=commit), 'cloned')
    old = world.token
    world.emu.expire()
    world.token = mint_token(world.emu)
    world.emu.reset()
    results, changed, failures = world.run([{'url': world.url('infra'), 'dest': dest, 'ref': 'main', 'commit': commit}])
    assert changed is False and failures == []
    assert_ok(results[0], 'unchanged')
    assert results[0]['credential_refreshed'] is True
    assert world.git_requests() == 0
    store = os.path.join(dest, '.git', 'codeferry-credentials')
    assert files_containing(dest, [old]) == []
    assert files_containing(dest, [world.token]) == [store]
    again = world.one(url=world.url('infra'), dest=dest, ref='main', commit=commit)
    assert again['credential_refreshed'] is False and again['changed'] is False
    world.git(dest, 'fetch', '-q')


def test_after_rotation_an_update_uses_the_new_token_and_no_other_helper_learns_it(world, tmp_path):
    # A helper of the host's user: git would hand it every credential that worked, unless told not to.
    leak = tmp_path / 'home' / 'leaked-credentials'
    (tmp_path / 'home' / '.gitconfig').write_text('[credential]\n\thelper = store --file %s\n' % leak)
    dest = str(tmp_path / 'rotate-update')
    world.token = mint_token(world.emu)
    assert_ok(world.one(url=world.url('svc-012'), dest=dest, ref='main'), 'cloned')
    world.emu.expire()
    world.token = mint_token(world.emu)
    new = world.emu.commit('acme/svc-012', {'after-rotation.txt': 'r\n'})
    result = world.one(url=world.url('svc-012'), dest=dest, ref='main', commit=new)
    assert_ok(result, 'updated')
    assert result['credential_refreshed'] is True
    assert not leak.exists()


def test_url_mode_puts_the_token_in_the_remote_url_only(world, tmp_path):
    world.token = mint_token(world.emu)
    dest = str(tmp_path / 'urlmode')
    result = world.one(url=world.url('web'), dest=dest, ref='main', credential_mode='url')
    assert_ok(result, 'cloned')
    config = os.path.join(dest, '.git', 'config')
    origin = world.git(dest, 'config', 'remote.origin.url')
    assert origin == world.url('web').replace('https://', 'https://x-token-auth:%s@' % _git.quote(world.token, safe=''))
    assert mode_of(config) == 0o600
    assert files_containing(dest, [world.token]) == [config]
    assert world.token not in world.argv() and _git.quote(world.token, safe='') not in world.argv()
    assert not os.path.exists(os.path.join(dest, '.git', 'codeferry-credentials'))
    # The module itself fetches through it, and a later fetch by the owner works too.
    new = world.emu.commit('acme/web', {'url-mode.txt': 'u\n'})
    assert_ok(world.one(url=world.url('web'), dest=dest, ref='main', commit=new, credential_mode='url'), 'updated')
    world.git(dest, 'fetch', '-q')
    # Back to store mode: the remote URL is clean again.
    back = world.one(url=world.url('web'), dest=dest, ref='main', commit=new)
    assert back['credential_refreshed'] is True and back['changed'] is False
    assert world.git(dest, 'config', 'remote.origin.url') == world.url('web')
    assert files_containing(dest, [world.token]) == [os.path.join(dest, '.git', 'codeferry-credentials')]


def test_ephemeral_mode_leaves_nothing(world, tmp_path):
    world.token = mint_token(world.emu)
    dest = str(tmp_path / 'ephemeral')
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main', credential_mode='ephemeral'), 'cloned')
    new = world.emu.commit('acme/api', {'eph.txt': 'e\n'})
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main', commit=new, credential_mode='ephemeral'), 'updated')
    assert files_containing(dest, [world.token]) == []
    assert files_containing(str(tmp_path), [world.token]) == []
    assert world.token not in world.argv()
    assert world.git(dest, 'config', '--local', '--get-regexp', 'credential', check=False).stdout == ''
    # Without a credential of its own, the owner cannot fetch.
    failed = world.git(dest, 'fetch', '-q', check=False)
    assert failed.returncode != 0


def test_store_to_ephemeral_removes_the_store(world, tmp_path):
    dest = str(tmp_path / 'switch')
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main'), 'cloned')
    result = world.one(url=world.url('api'), dest=dest, ref='main', credential_mode='ephemeral')
    assert result['credential_refreshed'] is True
    assert not os.path.exists(os.path.join(dest, '.git', 'codeferry-credentials'))
    assert files_containing(dest, [WAT]) == []


def test_username_and_password(world, tmp_path):
    dest = str(tmp_path / 'basic')
    result = world.one(url=world.url('api'), dest=dest, ref='main', access_token=None, username='alice',
                       password='alice-app-password-1')
    assert_ok(result, 'cloned')
    assert open(os.path.join(dest, '.git', 'codeferry-credentials')).read().startswith('https://alice:alice-app-password-1@')
    assert 'alice-app-password-1' not in world.argv()


def test_a_token_the_server_refuses(world, tmp_path):
    dest = str(tmp_path / 'refused-token')
    result = world.one(url=world.url('api'), dest=dest, ref='main', access_token='not-a-valid-token-1234')
    assert result['failed'] is True
    assert 'refused the credentials' in result['msg']
    assert 'not-a-valid-token-1234' not in result['msg']
    assert not os.path.exists(dest)


# ---------------------------------------------------------------- atomic clone, ownership


def test_a_dropped_connection_mid_clone_leaves_nothing(world, tmp_path):
    dest = str(tmp_path / 'dropped')
    world.emu.fault(path_prefix='/acme/svc-010.git/git-upload-pack', drop=True, count=1)
    try:
        result = world.one(url=world.url('svc-010'), dest=dest, ref='main')
    finally:
        world.emu.clear_faults()
    assert result['failed'] is True and result['action'] == 'failed'
    assert 'clone of %s into %s failed, nothing was left' % (world.url('svc-010'), dest) in result['msg']
    assert not os.path.exists(dest)
    assert [name for name in os.listdir(str(tmp_path)) if 'codeferry' in name] == []
    assert_ok(world.one(url=world.url('svc-010'), dest=dest, ref='main'), 'cloned')


def test_a_dropped_connection_mid_fetch_leaves_the_checkout_as_it_was(world, tmp_path):
    dest = str(tmp_path / 'dropped-update')
    old = world.remote('svc-013')
    assert_ok(world.one(url=world.url('svc-013'), dest=dest, ref='main', commit=old), 'cloned')
    new = world.emu.commit('acme/svc-013', {'x.txt': 'x\n'})
    world.emu.fault(path_prefix='/acme/svc-013.git/git-upload-pack', drop=True, count=2)
    try:
        result = world.one(url=world.url('svc-013'), dest=dest, ref='main', commit=new)
    finally:
        world.emu.clear_faults()
    assert result['failed'] is True and 'the checkout is as it was' in result['msg']
    assert world.git(dest, 'rev-parse', 'HEAD') == old
    assert world.git(dest, 'status', '--porcelain') == ''
    assert_ok(world.one(url=world.url('svc-013'), dest=dest, ref='main', commit=new), 'updated')


def test_an_empty_directory_behind_a_link_is_filled_and_the_link_kept(world, tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    link = tmp_path / 'link'
    link.symlink_to(real)
    assert_ok(world.one(url=world.url('api'), dest=str(link), ref='main'), 'cloned')
    assert link.is_symlink() and (real / '.git').is_dir()
    assert_ok(world.one(url=world.url('api'), dest=str(link), ref='main'), 'unchanged')


def test_a_leftover_of_a_killed_run_is_cleared(world, tmp_path):
    dest = str(tmp_path / 'killed')
    leftover = str(tmp_path / '.killed.codeferry-clone-abc123')
    os.makedirs(os.path.join(leftover, '.git'))
    assert_ok(world.one(url=world.url('api'), dest=dest, ref='main'), 'cloned')
    assert not os.path.exists(leftover)


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give files to another user')
def test_owner_group_and_mode_as_root(world, public_dir):
    base = os.path.join(public_dir, 'owned-%d' % os.getpid())
    dest = os.path.join(base, 'api')
    # The argv-recording wrapper lives in a directory only root can enter.
    world.environ['PATH'] = os.environ['PATH']
    try:
        result = world.one(url=world.url('api'), dest=dest, ref='main', owner='nobody', group='nogroup', mode='0750')
        assert_ok(result, 'cloned')
        nobody = 65534
        for directory, dirs, files in os.walk(dest):
            for name in [directory] + [os.path.join(directory, n) for n in dirs + files]:
                info = os.lstat(name)
                assert (info.st_uid, info.st_gid) == (nobody, nobody), name
        assert mode_of(dest) == 0o750
        assert mode_of(os.path.join(dest, '.git', 'codeferry-credentials')) == 0o600
        # The owner's own git passes the safe.directory check and can fetch with the store.
        env = world.git_env(HOME='/nonexistent')
        assert world.git(dest, 'status', '--porcelain', env=env, user='nobody') == ''
        world.git(dest, 'fetch', '-q', env=env, user='nobody')
        # A warm run changes nothing, and leaves nothing owned by root.
        again = world.one(url=world.url('api'), dest=dest, ref='main', commit=result['after'], owner='nobody',
                          group='nogroup', mode='0750')
        assert_ok(again, 'unchanged')
        assert again['changed'] is False
        # A wrong mode or owner is repaired, and reported as a change.
        os.chmod(dest, 0o755)
        os.chown(os.path.join(dest, 'README.md'), 0, 0)
        fixed = world.one(url=world.url('api'), dest=dest, ref='main', commit=result['after'], owner='nobody',
                          group='nogroup', mode='0750')
        assert fixed['changed'] is True and fixed['action'] == 'unchanged'
        assert mode_of(dest) == 0o750 and os.lstat(os.path.join(dest, 'README.md')).st_uid == nobody
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- check mode


def test_check_mode_clone_changes_nothing_and_reports_the_commit(world, tmp_path):
    dest = str(tmp_path / 'check')
    result = world.one(check_mode=True, url=world.url('web'), dest=dest, ref='develop')
    assert_ok(result, 'cloned')
    assert result['changed'] is True and result['after'] == world.remote('web', 'refs/heads/develop')
    assert not os.path.exists(dest)
    assert [name for name in os.listdir(str(tmp_path)) if 'codeferry' in name] == []


def test_check_mode_update_and_refusal_tell_the_truth(world, tmp_path):
    slug = 'svc-011'
    dest = str(tmp_path / 'check-update')
    old = world.remote(slug)
    assert_ok(world.one(url=world.url(slug), dest=dest, ref='main', commit=old), 'cloned')
    refs_before = world.git(dest, 'for-each-ref')
    objects_before = world.git(dest, 'count-objects', '-v')
    new = world.emu.commit('acme/' + slug, {'planned.txt': 'p\n'})
    would = world.one(check_mode=True, url=world.url(slug), dest=dest, ref='main')
    assert_ok(would, 'updated')
    assert (would['before'], would['after'], would['changed']) == (old, new, True)
    with open(os.path.join(dest, 'planned.txt'), 'w') as handle:
        handle.write('mine\n')
    refused = world.one(check_mode=True, url=world.url(slug), dest=dest, ref='main', commit=new)
    assert refused['action'] == 'refused' and refused['local_work']['untracked_in_the_way'] == ['planned.txt']
    forced = world.one(check_mode=True, url=world.url(slug), dest=dest, ref='main', commit=new, force=True)
    assert_ok(forced, 'updated')
    assert forced['backup_ref'] is None
    # Nothing in dest moved: no refs, no objects, the untracked file as it was.
    assert world.git(dest, 'for-each-ref') == refs_before
    assert world.git(dest, 'count-objects', '-v') == objects_before
    assert world.git(dest, 'rev-parse', 'HEAD') == old
    assert open(os.path.join(dest, 'planned.txt')).read() == 'mine\n'


def test_check_mode_warm_and_token_rotation(world, tmp_path):
    dest = str(tmp_path / 'check-warm')
    result = world.one(url=world.url('api'), dest=dest, ref='main')
    world.emu.reset()
    warm = world.one(check_mode=True, url=world.url('api'), dest=dest, ref='main', commit=result['after'])
    assert_ok(warm, 'unchanged')
    assert warm['credential_refreshed'] is False and world.git_requests() == 0
    world.token = mint_token(world.emu)
    rotated = world.one(check_mode=True, url=world.url('api'), dest=dest, ref='main', commit=result['after'])
    assert rotated['credential_refreshed'] is True and rotated['changed'] is False
    assert WAT in open(os.path.join(dest, '.git', 'codeferry-credentials')).read().replace('%2b', '+').replace(
        '%2f', '/').replace('%3d', '=')


# ---------------------------------------------------------------- bad input


def closed_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_bad_inputs_fail_per_repository(world, tmp_path):
    a_file = tmp_path / 'a-file'
    a_file.write_text('x')
    other_repo = str(tmp_path / 'other-repo')
    assert_ok(world.one(url=world.url('web'), dest=other_repo, ref='main'), 'cloned')
    not_empty = tmp_path / 'not-empty'
    not_empty.mkdir()
    (not_empty / 'file').write_text('x')
    good = str(tmp_path / 'good')
    unreachable = 'https://127.0.0.1:%d/acme/api.git' % closed_port()
    cases = [
        ({'url': world.url('api'), 'dest': str(a_file)}, 'exists and is not a directory'),
        ({'url': world.url('api'), 'dest': other_repo}, 'holds a clone of another repository (%s)' % world.url('web')),
        ({'url': world.url('api'), 'dest': str(not_empty)}, 'is not empty and is not a git checkout'),
        ({'url': world.url('api'), 'dest': str(tmp_path / 'u1'), 'ref': 'no-such-branch'}, 'has no branch or tag named no-such-branch'),
        ({'url': world.url('api'), 'dest': str(tmp_path / 'u2'), 'commit': 'ab' * 20}, 'commit %s does not exist' % ('ab' * 20)),
        ({'url': world.url('api'), 'dest': str(tmp_path / 'u2b'), 'commit': 'ab' * 20, 'ref': 'main'},
         'commit %s does not exist' % ('ab' * 20)),
        ({'url': unreachable, 'dest': str(tmp_path / 'u3'), 'ref': 'main'}, 'Failed to connect'),
        ({'url': world.url('api'), 'dest': '/sys/codeferry-unwritable/api'}, 'cannot create the parent directory /sys/codeferry-unwritable'),
        ({'url': world.url('api'), 'dest': '/sys/api'}, 'cannot create a temporary directory in /sys'),
        ({'url': world.url('api').replace('https://', 'https://x-token-auth:hunter2hunter2@'), 'dest': str(tmp_path / 'u4')},
         'must not contain credentials'),
        ({'url': world.url('api'), 'dest': 'relative/dest'}, "dest must be an absolute path, got 'relative/dest'"),
        ({'url': world.url('api').replace('https://', 'http://'), 'dest': str(tmp_path / 'u5')}, 'must start with https://'),
        ({'url': world.url('api'), 'dest': str(tmp_path / 'u6'), 'commit': 'abc123'}, 'must be a full commit hash'),
        ({'url': world.url('api'), 'dest': str(tmp_path / 'u7'), 'ref': '--upload-pack=touch ' + str(tmp_path / 'pwned')}, 'not a valid branch or tag name'),
        ({'url': world.url('api'), 'dest': str(tmp_path / 'u8'), 'depth': 0}, 'depth must be'),
        ({'url': world.url('nope'), 'dest': str(tmp_path / 'u9'), 'ref': 'main'}, 'repository not found'),
    ]
    repos = [case for case, dummy in cases] + [{'url': world.url('api'), 'dest': good, 'ref': 'main'},
                                               {'url': world.url('api'), 'dest': good, 'ref': 'main'}]
    results, changed, failures = world.run(repos)
    for (case, expected), result in zip(cases, results):
        assert result['failed'] is True, case
        assert expected in result['msg'], (case, result['msg'])
        assert 'Traceback' not in result['msg']
    assert 'hunter2hunter2' not in str(results) and 'hunter2hunter2' not in ' '.join(failures)
    assert_ok(results[-2], 'cloned')
    assert results[-1]['failed'] is True and 'is given twice' in results[-1]['msg']
    assert len(failures) == len(cases) + 1
    assert changed is True
    assert not os.path.exists(str(tmp_path / 'pwned'))


def test_certificates_the_host_does_not_trust(world, tmp_path):
    # The host trusts only the system store (GIT_SSL_CAINFO on this machine, or git's default).
    world.environ['GIT_SSL_CAINFO'] = '/etc/ssl/certs/ca-certificates.crt'
    untrusted = world.one(url=world.url('api'), dest=str(tmp_path / 'untrusted'), ref='main', ca_path=None)
    assert untrusted['failed'] is True and 'certificate' in untrusted['msg']
    assert not os.path.exists(str(tmp_path / 'untrusted'))
    unverified = world.one(url=world.url('api'), dest=str(tmp_path / 'unverified'), ref='main', ca_path=None,
                           validate_certs=False)
    assert_ok(unverified, 'cloned')


def test_module_wide_bad_input_is_a_validation_error(world):
    with pytest.raises(_git.ValidationError, match='owner no-such-user-xyz: no such user'):
        world.run([{'url': world.url('api'), 'dest': '/tmp/x'}], owner='no-such-user-xyz')
    with pytest.raises(_git.ValidationError, match='without control characters'):
        world.run([{'url': world.url('api'), 'dest': '/tmp/x'}], access_token='abc\ndef')
    with pytest.raises(_git.ValidationError, match='mode must be an octal string'):
        world.run([{'url': world.url('api'), 'dest': '/tmp/x'}], mode='rwx')


def test_git_missing_is_a_clear_error(world, tmp_path):
    world.environ['PATH'] = str(tmp_path / 'empty-path')
    result = world.one(url=world.url('api'), dest=str(tmp_path / 'nogit'), ref='main')
    assert result['failed'] is True and 'git is not installed on this host' in result['msg']


def test_git_runs_without_a_shell_and_without_secrets_in_argv(world, tmp_path):
    world.token = mint_token(world.emu)
    dest = str(tmp_path / 'argv')
    world.one(url=world.url('api'), dest=dest, ref='main')
    world.emu.commit('acme/api', {'argv.txt': 'a\n'})
    world.one(url=world.url('api'), dest=dest, ref='main')
    log = world.argv()
    assert 'fetch' in log.splitlines()
    for form in __import__('git_helpers').secret_forms(world.token):
        assert form not in log
    # The credential travels only in the git child's environment, never in the module's own.
    assert _git.PASSWORD_VAR not in os.environ
    proc = subprocess.run(['grep', '-rl', world.token, str(tmp_path)], capture_output=True, text=True, check=False)
    assert [line for line in proc.stdout.splitlines() if not line.endswith('codeferry-credentials')] == []


def test_dest_defaults_to_root_and_the_repository_name():
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._git import RepoSpec
    spec = RepoSpec({'url': 'https://bitbucket.org/acme/api.git'}, '/srv/checkouts')
    assert spec.dest == '/srv/checkouts/api'
    assert RepoSpec({'url': 'https://bitbucket.org/acme/web', 'dest': '/opt/web'}, '/srv').dest == '/opt/web'
    with pytest.raises(_git.ValidationError, match="dest is required"):
        RepoSpec({'url': 'https://bitbucket.org/acme/api.git'})


@pytest.mark.parametrize('url', ['https://h/ws/..', 'https://h/ws/.', 'https://h/ws/.git', 'https://h/ws/..git'])
def test_a_dot_name_never_goes_to_or_above_root(url):
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._git import RepoSpec
    with pytest.raises(_git.ValidationError, match='give dest'):
        RepoSpec({'url': url}, '/srv/checkouts')


PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'


def test_install_ca_writes_once_then_leaves_the_file_alone(tmp_path):
    path = str(tmp_path / 'etc' / 'codeferry' / 'ca.pem')
    assert _git.install_ca(path, PEM) == (True, path)
    assert open(path, encoding='utf-8').read() == PEM + '\n'
    assert mode_of(path) == 0o644 and mode_of(os.path.dirname(path)) == 0o755
    assert _git.install_ca(path, PEM + '\n') == (False, path)
    os.chmod(path, 0o600)
    assert _git.install_ca(path, PEM) == (True, path) and mode_of(path) == 0o644


def test_install_ca_in_check_mode_writes_nothing_and_lends_git_a_temporary_copy(tmp_path):
    path = str(tmp_path / 'ca.pem')
    changed, used = _git.install_ca(path, PEM, check_mode=True)
    assert changed and used != path and not os.path.exists(path)
    assert open(used, encoding='utf-8').read() == PEM + '\n'
    os.unlink(used)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('old')
    assert _git.install_ca(path, PEM, check_mode=True) == (True, path)
    assert open(path, encoding='utf-8').read() == 'old'


@pytest.mark.parametrize('case', ['link', 'directory', 'not pem', 'no path'])
def test_install_ca_refuses(case, tmp_path):
    path = str(tmp_path / 'ca.pem')
    target = tmp_path / 'elsewhere.pem'
    target.write_text('keep')
    content = PEM
    if case == 'link':
        os.symlink(str(target), path)
    elif case == 'directory':
        os.mkdir(path)
    elif case == 'not pem':
        content = 'hello'
    else:
        path = None
    with pytest.raises(_git.ValidationError) as info:
        _git.install_ca(path, content)
    assert 'ca_' in str(info.value)
    assert target.read_text() == 'keep'


@pytest.mark.parametrize('value', ['4294967295', '4294967296', '99999999999', '\u00b2', '-1', '1.5'])
def test_owner_and_group_numbers_out_of_range_are_refused(value):
    for owner, group in ((value, None), (None, value)):
        with pytest.raises(_git.ValidationError) as info:
            _git.resolve_owner(owner, group)
        assert 'not an id from 0 to 4294967294' in str(info.value)
