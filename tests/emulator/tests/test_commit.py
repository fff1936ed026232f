"""POST /_emulator/commit: a commit added upstream is what git, the REST API and archives see next."""

import io
import tarfile

import pytest
import requests

from bitbucket_emulator.testing import Emulator, EmulatorError


@pytest.fixture(scope='module', name='private_emulator')
def private_emulator_fixture():
    """An emulator of this module's own: commits change repositories that the shared one must keep as built."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(name='own')
def own_fixture(private_emulator, bitbucket_for):
    return bitbucket_for(private_emulator)


def remote_refs(bb, slug='api'):
    return bb.ls_remote(bb.clone_url('acme', slug, 'x-token-auth', bb.ACME_WAT))


def test_commit_moves_the_branch_and_git_sees_it(own, tmp_path):
    bb = own
    before = remote_refs(bb)['refs/heads/main']
    answer = bb.emu.control('commit', {'repository': 'acme/api', 'branch': 'main',
                                       'files': {'app/config.yml': 'port: 8080\n', 'README.md': '# changed\n'},
                                       'message': 'Configure the port'})
    assert answer['branch'] == 'main' and answer['repository'] == 'acme/api'
    commit = answer['commit']
    assert len(commit) == 40 and commit != before
    assert remote_refs(bb)['refs/heads/main'] == commit
    # Other branches and tags stay where they were.
    assert remote_refs(bb)['refs/heads/release/1.x'] != commit

    dest = tmp_path / 'clone'
    bb.clone(bb.clone_url('acme', 'api', 'x-token-auth', bb.ACME_WAT), dest)
    assert (dest / 'app' / 'config.yml').read_text() == 'port: 8080\n'
    assert (dest / 'README.md').read_text() == '# changed\n'
    assert bb.git('log', '-1', '--format=%P %s', cwd=dest).stdout.strip() == '%s Configure the port' % before


def test_rest_api_and_archive_see_the_new_commit(own):
    bb = own
    commit = bb.emu.commit('acme/web', {'new.txt': 'hello\n'})
    headers = bb.bearer(bb.ACME_WAT)
    branch = bb.get('/repositories/acme/web/refs/branches/main', headers=headers).json()
    assert branch['target']['hash'] == commit
    assert branch['target']['message'].strip() == 'Update files'
    archive = bb.web('/acme/web/get/%s.tar.gz' % commit, headers=headers)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode='r:gz') as tar:
        names = {name.split('/', 1)[1] for name in tar.getnames() if '/' in name}
    assert 'new.txt' in names


def test_a_second_commit_has_the_first_as_parent_and_can_delete(own, tmp_path):
    bb = own
    first = bb.emu.commit('acme/api', {'a.txt': 'a\n', 'b.txt': 'b\n'})
    second = bb.emu.commit('acme/api', {'a.txt': None}, message='Remove a')
    dest = tmp_path / 'clone'
    bb.clone(bb.clone_url('acme', 'api', 'x-token-auth', bb.ACME_WAT), dest)
    assert bb.git('rev-parse', 'HEAD', 'HEAD^', cwd=dest).stdout.split() == [second, first]
    assert not (dest / 'a.txt').exists()
    assert (dest / 'b.txt').read_text() == 'b\n'
    # Committer dates never go backwards, even within one second.
    dates = bb.git('log', '-2', '--format=%ct', cwd=dest).stdout.split()
    assert int(dates[0]) > int(dates[1])


def test_a_new_branch_starts_at_the_main_branch(own):
    bb = own
    main = remote_refs(bb)['refs/heads/main']
    commit = bb.emu.commit('acme/api', {'feature.txt': 'x\n'}, branch='feature/x')
    refs = remote_refs(bb)
    assert refs['refs/heads/feature/x'] == commit
    assert refs['refs/heads/main'] == main


def test_commit_to_a_public_repository_with_another_main_branch(own):
    bb = own
    commit = bb.emu.commit('acme/docs', {'index.md': '# Docs\n'})
    assert bb.ls_remote(bb.clone_url('acme', 'docs'))['refs/heads/master'] == commit


@pytest.mark.parametrize('payload, message', [
    ({'repository': 'acme', 'files': {'a': 'b'}}, 'workspace/slug'),
    ({'repository': 'acme/nope', 'files': {'a': 'b'}}, 'unknown repository acme/nope'),
    ({'repository': 'acme/api', 'files': {}}, 'files must map'),
    ({'repository': 'acme/api', 'files': {'../escape': 'x'}}, 'invalid file path'),
    ({'repository': 'acme/api', 'files': {'/abs': 'x'}}, 'invalid file path'),
    ({'repository': 'acme/api', 'files': {'.git/config': 'x'}}, 'invalid file path'),
    ({'repository': 'acme/api', 'files': {'a': 3}}, 'must be a string or null'),
    ({'repository': 'acme/api', 'files': {'a': 'b'}, 'branch': 'bad..name'}, 'branch must be'),
    ({'repository': 'acme/api', 'files': {'a': 'b'}, 'message': ''}, 'message must be'),
    ({'repository': 'acme/api', 'files': {'a': 'b'}, 'colour': 'red'}, 'unknown keys: colour'),
    (['not', 'an', 'object'], 'expected a JSON object'),
])
def test_bad_commit_requests_are_400(own, payload, message):
    bb = own
    before = remote_refs(bb)['refs/heads/main']
    with pytest.raises(EmulatorError) as failure:
        bb.emu.control('commit', payload)
    assert 'HTTP 400' in str(failure.value)
    assert message in str(failure.value)
    assert remote_refs(bb)['refs/heads/main'] == before


def test_commit_needs_post_and_is_not_counted(own):
    bb = own
    response = requests.get(bb.base_url + '/_emulator/commit', verify=bb.ca_file, timeout=30)
    assert response.status_code == 405
    bb.emu.reset()
    bb.emu.commit('acme/api', {'counted.txt': 'no\n'})
    assert bb.emu.stats()['requests'] == {'token': 0, 'api': 0, 'git': 0, 'archive': 0}
