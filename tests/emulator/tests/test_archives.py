"""Repository snapshot archives (`/{ws}/{slug}/get/{ref}.tar.gz|.zip`) of the emulator."""

import io
import tarfile
import urllib.parse
import zipfile

import pytest


def tar_files(content):
    with tarfile.open(fileobj=io.BytesIO(content), mode='r:gz') as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers() if member.isfile()}


def zip_files(content):
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


def archive_files(extension, content):
    return tar_files(content) if extension == 'tar.gz' else zip_files(content)


def git_files(bb, tmp_path, slug, ref):
    """Files at `ref` as git sees them: path -> bytes."""
    dest = tmp_path / ('git-' + slug)
    if not dest.exists():
        bb.clone(bb.clone_url('acme', slug, bb.ALICE, bb.ALICE_APP_PASSWORD), dest)
    names = bb.git('ls-tree', '-r', '--name-only', ref, cwd=dest).stdout.split('\n')
    return {name: bb.git('show', '%s:%s' % (ref, name), cwd=dest, text=False).stdout for name in names if name}


def strip_prefix(files):
    """Archives put everything under one top-level directory; drop it."""
    tops = {name.split('/', 1)[0] for name in files}
    assert len(tops) == 1, 'expected one top-level directory, got %r' % sorted(tops)
    assert all('/' in name for name in files)
    return {name.split('/', 1)[1]: data for name, data in files.items()}


@pytest.mark.parametrize('extension', ['tar.gz', 'zip'])
@pytest.mark.parametrize('ref', ['main', 'v1.0.0'])
def test_bearer_downloads_archive(bb, tmp_path, extension, ref):
    token = bb.alice_token()
    response = bb.web('/acme/api/get/%s.%s' % (ref, extension), headers=bb.bearer(token))
    assert response.status_code == 200
    files = strip_prefix(archive_files(extension, response.content))
    assert files
    assert any(data for data in files.values())
    assert files == git_files(bb, tmp_path, 'api', 'origin/' + ref if ref == 'main' else ref)


def test_archive_of_commit_hash(bb):
    token = bb.alice_token()
    sha = bb.get('/repositories/acme/api/refs/branches/main', headers=bb.bearer(token)).json()['target']['hash']
    by_hash = bb.web('/acme/api/get/%s.zip' % sha, headers=bb.bearer(token))
    by_name = bb.web('/acme/api/get/main.zip', headers=bb.bearer(token))
    assert by_hash.status_code == by_name.status_code == 200
    assert strip_prefix(zip_files(by_hash.content)) == strip_prefix(zip_files(by_name.content))


def test_branch_archives_differ(bb):
    token = bb.alice_token()
    main = bb.web('/acme/web/get/main.tar.gz', headers=bb.bearer(token))
    develop = bb.web('/acme/web/get/develop.tar.gz', headers=bb.bearer(token))
    assert main.status_code == develop.status_code == 200
    assert strip_prefix(tar_files(main.content)) != strip_prefix(tar_files(develop.content))


@pytest.mark.parametrize('extension', ['tar.gz', 'zip'])
def test_api_token_basic_header_downloads(bb, extension):
    response = bb.web('/acme/api/get/main.' + extension, headers=bb.basic(bb.ALICE_EMAIL, bb.ALICE_API_TOKEN))
    assert response.status_code == 200
    assert archive_files(extension, response.content)


@pytest.mark.parametrize('extension', ['tar.gz', 'zip'])
def test_url_userinfo_redirects_to_login(bb, extension):
    token = bb.alice_token()
    response = bb.web('/acme/api/get/main.' + extension, auth=('x-token-auth', token))
    assert response.status_code == 302
    location = urllib.parse.urlsplit(response.headers['Location'])
    # bitbucket.org sends browsers to /account/signin/?next=<the page>
    assert 'signin' in location.path or 'login' in location.path
    assert urllib.parse.parse_qs(location.query).get('next') == ['/acme/api/get/main.' + extension]
    assert response.content == b''


@pytest.mark.parametrize('extension', ['tar.gz', 'zip'])
def test_query_access_token_is_forbidden(bb, legacy_bb, extension):
    for client in (bb, legacy_bb):
        response = client.web('/acme/api/get/main.' + extension, params={'access_token': client.alice_token()})
        assert response.status_code == 403
        assert not response.content.startswith((b'\x1f\x8b', b'PK'))


def test_anonymous_private_archive_is_refused(bb):
    response = bb.web('/acme/api/get/main.tar.gz')
    assert response.status_code in (302, 401, 403, 404)
    assert not response.content.startswith(b'\x1f\x8b')


def test_public_archive_anonymously(bb):
    response = bb.web('/acme/docs/get/master.tar.gz')
    assert response.status_code == 200
    assert tar_files(response.content)


def test_expired_token_archive_refused(bb):
    token = bb.alice_token()
    bb.emu.expire()
    response = bb.web('/acme/api/get/main.tar.gz', headers=bb.bearer(token))
    assert response.status_code in (401, 403)
    assert not response.content.startswith(b'\x1f\x8b')


def test_unknown_ref_is_404(bb):
    response = bb.web('/acme/api/get/no-such-ref.tar.gz', headers=bb.bearer(bb.alice_token()))
    assert response.status_code == 404
