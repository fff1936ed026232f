# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""method=archive against the emulator's real archives, and safe unpacking of hostile tarballs."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import pytest

from git_helpers import WAT, World, files_containing, mint_token, mode_of

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _git
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import ModuleHttp


class FakeModule(object):
    """The little of AnsibleModule that fetch_url() reads."""

    def __init__(self, tmpdir):
        self.params = {'validate_certs': True}
        self.tmpdir = tmpdir

    def fail_json(self, **kwargs):
        raise AssertionError('fetch_url called fail_json: %r' % (kwargs,))


@pytest.fixture(scope='module', name='emu')
def emu_fixture():
    from bitbucket_emulator.testing import Emulator

    with Emulator() as emulator:
        yield emulator


@pytest.fixture(name='world')
def world_fixture(emu, tmp_path):
    return World(emu, emu.ca_file, tmp_path)


def http_factory(world):
    return lambda: ModuleHttp(FakeModule(str(world.tmp)), ca_path=world.ca_file, timeout=30)


def archive(world, check_mode=False, **kwargs):
    return world.one(check_mode=check_mode, http_factory=http_factory(world), method='archive', **kwargs)


def tree_at(world, slug, commit, tmp_path):
    """path -> text of every file at commit, as git sees it."""
    clone = tmp_path / ('git-' + slug)
    auth = ['-c', 'http.sslCAInfo=' + world.emu.ca_file, '-c', 'credential.helper=',
            '-c', 'credential.helper=!f() { echo username=x-token-auth; echo "password=%s"; }; f' % WAT]
    if not clone.exists():
        world.git(str(tmp_path), *auth, 'clone', '-q', world.url(slug), str(clone))
    world.git(str(clone), *auth, 'fetch', '-q', 'origin')
    names = world.git(str(clone), 'ls-tree', '-r', '--name-only', commit).splitlines()
    return {name: world.git(str(clone), 'show', '%s:%s' % (commit, name)) for name in names}


def tree_on_disk(dest):
    files = {}
    for directory, dirs, names in os.walk(dest):
        for name in names:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, dest)
            if relative != _git.ARCHIVE_MARKER:
                with open(path) as handle:
                    files[relative] = handle.read().strip()
    return files


def test_archive_cold_warm_and_update(world, tmp_path):
    world.token = mint_token(world.emu)
    dest = str(tmp_path / 'deploy' / 'api')
    commit = world.remote('api')
    world.emu.reset()
    result = archive(world, url=world.url('api'), dest=dest, commit=commit, mode='0750')
    assert result['failed'] is False, result.get('msg')
    assert (result['action'], result['changed'], result['method']) == ('cloned', True, 'archive')
    assert world.emu.stats()['requests']['archive'] == 1
    assert world.emu.stats()['requests']['git'] == 0
    assert tree_on_disk(dest) == tree_at(world, 'api', commit, tmp_path)
    assert mode_of(dest) == 0o750
    assert '"commit": "%s"' % commit in open(os.path.join(dest, _git.ARCHIVE_MARKER)).read()
    assert files_containing(str(tmp_path / 'deploy'), [world.token]) == []
    assert os.listdir(str(tmp_path / 'deploy')) == ['api']

    world.emu.reset()
    warm = archive(world, url=world.url('api'), dest=dest, commit=commit, mode='0750')
    assert (warm['action'], warm['changed'], warm['failed']) == ('unchanged', False, False)
    assert world.emu.stats()['requests']['archive'] == 0

    new = world.emu.commit('acme/api', {'README.md': None, 'added.txt': 'added\n'})
    inode = os.stat(dest).st_ino
    updated = archive(world, url=world.url('api'), dest=dest, commit=new, mode='0750')
    assert (updated['action'], updated['before'], updated['after']) == ('updated', commit, new)
    files = tree_on_disk(dest)
    assert 'README.md' not in files and files['added.txt'] == 'added'
    assert files == tree_at(world, 'api', new, tmp_path)
    assert os.stat(dest).st_ino != inode  # a new tree was swapped in, not written over the old one
    assert os.listdir(str(tmp_path / 'deploy')) == ['api']
    assert mode_of(dest) == 0o750


def test_archive_with_an_app_password(world, tmp_path):
    dest = str(tmp_path / 'basic')
    result = archive(world, url=world.url('web'), dest=dest, commit=world.remote('web'), access_token=None,
                     username='alice', password='alice-app-password-1')
    assert result['failed'] is False, result.get('msg')
    assert os.path.exists(os.path.join(dest, 'README.md'))


def test_archive_errors(world, tmp_path):
    commit = world.remote('api')
    refused = archive(world, url=world.url('api'), dest=str(tmp_path / 'a'), commit=commit, access_token='wrong-token-123456')
    assert refused['failed'] is True and 'wrong-token-123456' not in refused['msg']
    assert 'HTTP 401' in refused['msg'] or 'redirect' in refused['msg'] or 'login page' in refused['msg'], refused['msg']
    assert not os.path.exists(str(tmp_path / 'a'))
    missing = archive(world, url=world.url('api'), dest=str(tmp_path / 'b'), commit='cd' * 20)
    assert missing['failed'] is True and 'HTTP 404' in missing['msg']
    no_commit = archive(world, url=world.url('api'), dest=str(tmp_path / 'c'), ref='main')
    assert no_commit['failed'] is True and 'needs commit' in no_commit['msg']
    git_dest = str(tmp_path / 'git')
    assert world.one(url=world.url('api'), dest=git_dest, ref='main')['failed'] is False
    on_git = archive(world, url=world.url('api'), dest=git_dest, commit=commit)
    assert on_git['failed'] is True and 'holds a git checkout' in on_git['msg']
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'x').write_text('x')
    on_other = archive(world, url=world.url('api'), dest=str(other), commit=commit)
    assert on_other['failed'] is True and 'was not made with method=archive' in on_other['msg']
    assert sorted(os.listdir(str(other))) == ['x']
    assert [name for name in os.listdir(str(tmp_path)) if 'codeferry' in name] == []


def test_archive_check_mode_downloads_nothing(world, tmp_path):
    dest = str(tmp_path / 'check')
    world.emu.reset()
    result = archive(world, check_mode=True, url=world.url('api'), dest=dest, commit=world.remote('api'))
    assert (result['action'], result['changed'], result['failed']) == ('cloned', True, False)
    assert world.emu.stats()['requests']['archive'] == 0
    assert not os.path.exists(dest)


# ---------------------------------------------------------------- hostile archives


def tarball(*members):
    """members: (name, kind, data or link target); kinds file, exec, dir, symlink, hardlink, chr, blk, fifo."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            data = None
            if kind in ('file', 'exec'):
                data = value.encode()
                info.size = len(data)
                info.mode = 0o4755 if kind == 'exec' else 0o644
            elif kind == 'dir':
                info.type, info.mode = tarfile.DIRTYPE, 0o777
            elif kind == 'symlink':
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == 'hardlink':
                info.type, info.linkname = tarfile.LNKTYPE, value
            else:
                info.type = {'chr': tarfile.CHRTYPE, 'blk': tarfile.BLKTYPE, 'fifo': tarfile.FIFOTYPE}[kind]
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


@pytest.fixture(name='jail')
def jail_fixture(tmp_path):
    """(root, outside): unpack into root; nothing may ever appear in outside (root's parent)."""
    outside = tmp_path / 'outside'
    root = outside / 'root'
    root.mkdir(parents=True)
    return str(root), str(outside)


HOSTILE = {
    'absolute path': [('/tmp/codeferry-evil', 'file', 'x')],
    'dot-dot': [('../evil', 'file', 'x')],
    'dot-dot inside': [('top/a/../../../evil', 'file', 'x'), ('top/b', 'file', 'b')],
    'absolute link': [('top/link', 'symlink', '/etc/passwd'), ('top/b', 'file', 'b')],
    'relative link out': [('top/link', 'symlink', '../../evil'), ('top/b', 'file', 'b')],
    'link chain out': [('x', 'symlink', '.'), ('y', 'symlink', 'x/..'), ('z', 'file', 'z')],
    'write through a link': [('d', 'symlink', 'x/..'), ('x', 'symlink', '.'), ('d/evil', 'symlink', 'target')],
    'hard link out': [('top/h', 'hardlink', '../../etc/passwd'), ('top/b', 'file', 'b')],
    'hard link absolute': [('h', 'hardlink', '/etc/passwd'), ('b', 'file', 'b')],
    'character device': [('top/null', 'chr', None), ('top/b', 'file', 'b')],
    'block device': [('top/disk', 'blk', None), ('top/b', 'file', 'b')],
    'fifo': [('top/pipe', 'fifo', None), ('top/b', 'file', 'b')],
    'duplicate': [('a', 'file', '1'), ('a', 'file', '2'), ('b', 'file', 'b')],
}


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_hostile_archives_are_refused(jail, case):
    root, outside = jail
    with pytest.raises(_git.CheckoutError) as failure:
        _git.safe_extract(tarball(*HOSTILE[case]), root)
    assert 'unsafe archive' in str(failure.value) or 'cannot unpack' in str(failure.value)
    assert os.listdir(outside) == ['root']
    assert not os.path.exists('/tmp/codeferry-evil')


def test_a_good_archive_unpacks_with_safe_modes(jail):
    root, outside = jail
    count = _git.safe_extract(tarball(
        ('acme-api-0123456789ab/', 'dir', None),
        ('acme-api-0123456789ab/bin/run', 'exec', '#!/bin/sh\n'),
        ('acme-api-0123456789ab/docs/guide.md', 'file', 'guide\n'),
        ('acme-api-0123456789ab/latest', 'symlink', 'docs/guide.md'),
        ('acme-api-0123456789ab/docs/up', 'symlink', '../bin/run'),
        ('acme-api-0123456789ab/copy', 'hardlink', 'acme-api-0123456789ab/docs/guide.md'),
    ), root)
    assert count == 3
    assert sorted(os.listdir(root)) == ['bin', 'copy', 'docs', 'latest']
    assert mode_of(os.path.join(root, 'bin', 'run')) == 0o755  # executable, but never setuid
    assert mode_of(os.path.join(root, 'docs', 'guide.md')) == 0o644
    assert os.readlink(os.path.join(root, 'latest')) == 'docs/guide.md'
    assert open(os.path.join(root, 'docs', 'up')).read() == '#!/bin/sh\n'
    assert open(os.path.join(root, 'copy')).read() == 'guide\n'


def test_not_a_tarball(jail):
    root, dummy = jail
    with pytest.raises(_git.CheckoutError, match='not a readable .tar.gz'):
        _git.safe_extract(io.BytesIO(b'<html>Log in</html>'), root)


def test_hostile_download_leaves_the_old_tree(world, tmp_path, monkeypatch):
    """A hostile archive from the server: the repository fails, dest keeps its old tree, nothing is left beside it."""
    commit = world.remote('infra')
    dest = str(tmp_path / 'keep')
    assert archive(world, url=world.url('infra'), dest=dest, commit=commit)['failed'] is False
    before = tree_on_disk(dest)
    hostile = tarball(('top/../../evil', 'file', 'x')).getvalue()

    class HostileHttp(object):
        def request(self, method, url, headers=None, data=None):
            assert headers['Authorization'] == 'Bearer ' + world.token
            return 200, {}, hostile

    result = world.one(http_factory=HostileHttp, method='archive', url=world.url('infra'), dest=dest, commit='ef' * 20)
    assert result['failed'] is True and 'unsafe archive' in result['msg']
    assert tree_on_disk(dest) == before
    assert sorted(os.listdir(str(tmp_path))) == ['bin', 'git-argv.log', 'home', 'keep']


def test_exchange_swaps_two_directories(tmp_path):
    one, other = tmp_path / 'one', tmp_path / 'other'
    one.mkdir()
    other.mkdir()
    (one / 'a').write_text('1')
    (other / 'b').write_text('2')
    if not _git.exchange(str(one), str(other)):
        pytest.skip('renameat2 is not available here')
    assert os.listdir(str(one)) == ['b'] and os.listdir(str(other)) == ['a']
    shutil.rmtree(str(one))
