"""The Data Center flavour's git smart HTTP under /scm/ and its archive endpoint."""

import io
import tarfile
import zipfile

import pytest

INFO_REFS = '/info/refs?service=git-upload-pack'


def info_refs(dc, key, slug, **kwargs):
    return dc.get(dc.scm_url(key, slug) + INFO_REFS, **kwargs)


def assert_challenge(response):
    assert response.status_code == 401
    assert response.headers['WWW-Authenticate'] == 'Basic realm="Bitbucket"'
    assert b'refs/heads' not in response.content


# ---------------------------------------------------------------- git

@pytest.mark.parametrize('kind', ['project', 'repository', 'personal', 'oauth'])
def test_clone_with_bearer_extra_header(dc, tmp_path, kind):
    token = {'project': dc.PROJECT_TOKEN, 'repository': dc.REPO_TOKEN, 'personal': dc.ALICE_TOKEN}.get(kind)
    if kind == 'oauth':
        token = dc.oauth_tokens('REPO_READ')['access_token']
    dest = tmp_path / 'deploy'
    dc.git('clone', '--quiet', dc.scm_url('OPS', 'deploy'), str(dest), bearer=token)
    branches = dc.git('for-each-ref', '--format=%(refname:lstrip=3)', 'refs/remotes/origin', cwd=dest).stdout.split()
    assert set(branches) - {'HEAD'} == {'main', 'release/1.x'}
    assert dc.git('tag', '--list', cwd=dest).stdout.split() == ['v1.0.0']
    assert dc.git('rev-parse', '--abbrev-ref', 'HEAD', cwd=dest).stdout.strip() == 'main'
    assert (dest / 'README.md').is_file()
    # The token never lands in the clone's config.
    assert token not in (dest / '.git' / 'config').read_text()


@pytest.mark.parametrize('password', ['token', 'password'])
def test_clone_with_basic_personal_token_or_password(dc, tmp_path, password):
    secret = dc.ALICE_TOKEN if password == 'token' else dc.ALICE_PASSWORD
    dest = tmp_path / 'config'
    dc.git('clone', '--quiet', dc.scm_url('OPS', 'config', 'alice', secret), str(dest))
    head = dc.git('rev-parse', 'HEAD', cwd=dest).stdout.strip()
    assert head == dc.get('/projects/OPS/repos/config/branches/default', token=dc.ALICE_TOKEN).json()['latestCommit']


@pytest.mark.parametrize('token', ['project', 'repository'])
def test_basic_with_project_or_repository_token_is_refused(dc, token):
    secret = dc.PROJECT_TOKEN if token == 'project' else dc.REPO_TOKEN
    assert_challenge(info_refs(dc, 'OPS', 'deploy', auth=('alice', secret)))
    result = dc.git('ls-remote', dc.scm_url('OPS', 'deploy', 'alice', secret), check=False)
    assert result.returncode != 0
    assert 'Authentication failed' in result.stderr


@pytest.mark.parametrize('auth', [('alice', 'wrong'), ('bob', 'dc-personal-read-0123456789abcdefghij'), ('x-token-auth', 'whatever')])
def test_bad_basic_credentials_get_the_challenge(dc, auth):
    assert_challenge(info_refs(dc, 'PUB', 'docs', auth=auth))


def test_bad_bearer_gets_the_challenge(dc):
    assert_challenge(info_refs(dc, 'PUB', 'docs', headers={'Authorization': 'Bearer nope'}))


def test_anonymous_clones_public_but_not_private(dc):
    public = info_refs(dc, 'PUB', 'docs')
    assert public.status_code == 200
    assert public.headers['Content-Type'] == 'application/x-git-upload-pack-advertisement'
    assert_challenge(info_refs(dc, 'OPS', 'deploy'))
    assert_challenge(info_refs(dc, 'OPS', 'nope'))
    assert set(dc.ls_remote(dc.scm_url('PUB', 'docs'))) == {'HEAD', 'refs/heads/main'}


@pytest.mark.parametrize('token,key,slug', [('repository', 'OPS', 'config'), ('project', 'PUB', 'docs'), ('bob', 'OPS', 'deploy')])
def test_token_scope_bounds_git(dc, token, key, slug):
    secret = {'repository': dc.REPO_TOKEN, 'project': dc.PROJECT_TOKEN, 'bob': dc.BOB_TOKEN}[token]
    response = info_refs(dc, key, slug, headers={'Authorization': 'Bearer ' + secret})
    assert response.status_code == 404
    result = dc.git('ls-remote', dc.scm_url(key, slug), bearer=secret, check=False)
    assert result.returncode != 0


def test_oauth_public_repos_scope_reads_only_public_repositories(dc):
    token = dc.oauth_tokens('PUBLIC_REPOS')['access_token']
    assert info_refs(dc, 'PUB', 'docs', headers={'Authorization': 'Bearer ' + token}).status_code == 200
    assert info_refs(dc, 'OPS', 'deploy', headers={'Authorization': 'Bearer ' + token}).status_code == 404


def test_path_without_dot_git(dc):
    response = dc.get(dc.git_url + '/scm/ops/deploy/info/refs?service=git-upload-pack', headers={'Authorization': 'Bearer ' + dc.REPO_TOKEN})
    assert response.status_code == 200


def test_push_is_refused(dc, tmp_path):
    dest = tmp_path / 'deploy'
    dc.git('clone', '--quiet', dc.scm_url('OPS', 'deploy'), str(dest), bearer=dc.REPO_TOKEN)
    (dest / 'new.txt').write_text('x')
    dc.git('add', 'new.txt', cwd=dest)
    dc.git('-c', 'user.name=T', '-c', 'user.email=t@example.com', 'commit', '-qm', 'x', cwd=dest)
    result = dc.git('push', 'origin', 'HEAD:main', cwd=dest, bearer=dc.REPO_TOKEN, check=False)
    assert result.returncode != 0
    response = dc.get(dc.scm_url('OPS', 'deploy') + '/info/refs?service=git-receive-pack', headers={'Authorization': 'Bearer ' + dc.REPO_TOKEN})
    assert response.status_code == 403
    assert_challenge(dc.get(dc.scm_url('PUB', 'docs') + '/info/refs?service=git-receive-pack'))


def test_generated_repository_clones(dc, tmp_path):
    dest = tmp_path / 'svc'
    dc.git('clone', '--quiet', dc.scm_url('OPS', 'svc-060'), str(dest), bearer=dc.PROJECT_TOKEN)
    assert int(dc.git('rev-list', '--count', 'HEAD', cwd=dest).stdout) == 3


# ---------------------------------------------------------------- archives

def archive(dc, key='OPS', slug='deploy', token=None, headers=None, **params):
    url = '%s/rest/api/latest/projects/%s/repos/%s/archive' % (dc.base_url, key, slug)
    return dc.get(url, token=token, headers=dict(headers or {}), params=params)


def names(fmt, content):
    if fmt == 'zip':
        return zipfile.ZipFile(io.BytesIO(content)).namelist()
    return tarfile.open(fileobj=io.BytesIO(content), mode='r:*').getnames()


@pytest.mark.parametrize('fmt', ['tar.gz', 'tgz', 'tar', 'zip'])
def test_archive_formats(dc, fmt):
    response = archive(dc, token=dc.REPO_TOKEN, at='main', format=fmt)
    assert response.status_code == 200, response.text
    assert 'README.md' in names(fmt, response.content)
    assert response.headers['Content-Disposition'].endswith('.%s"' % fmt)
    if fmt in ('tar.gz', 'tgz'):
        assert response.content[:2] == b'\x1f\x8b'


def test_archive_at_commit_tag_and_default(dc):
    commit = dc.get('/projects/OPS/repos/deploy/commits/release/1.x', token=dc.ALICE_TOKEN).json()['id']
    at_commit = archive(dc, token=dc.ALICE_TOKEN, at=commit, format='tar')
    assert 'notes/branch-1.md' in names('tar', at_commit.content)
    assert commit[:12] in at_commit.headers['Content-Disposition']
    assert 'notes/branch-1.md' not in names('tar', archive(dc, token=dc.ALICE_TOKEN, at='v1.0.0', format='tar').content)
    default = archive(dc, token=dc.ALICE_TOKEN)
    assert default.headers['Content-Type'] == 'application/zip'
    assert 'README.md' in names('zip', default.content)
    prefixed = archive(dc, token=dc.ALICE_TOKEN, format='tar', prefix='deploy')
    assert 'deploy/README.md' in names('tar', prefixed.content)


def test_archive_needs_the_authorization_header(dc):
    # A token in the URL authenticates nothing: the caller is anonymous and sees no private repository.
    for params in ({'access_token': dc.REPO_TOKEN}, {}):
        response = archive(dc, format='zip', **params)
        assert response.status_code == 404
        assert dc.errors(response) == ['Project OPS does not exist.']
    assert archive(dc, 'PUB', 'docs', format='zip').status_code == 200
    refused = archive(dc, headers=dc.basic('alice', dc.PROJECT_TOKEN))
    assert refused.status_code == 401


def test_archive_bounded_by_token_scope(dc):
    response = archive(dc, 'OPS', 'config', token=dc.REPO_TOKEN)
    assert response.status_code == 404
    assert dc.errors(response) == ['Repository OPS/config does not exist.']


@pytest.mark.parametrize('params,status', [({'format': 'rar'}, 400), ({'at': 'nope'}, 404), ({'at': 'deadbeef00'}, 404)])
def test_archive_errors(dc, params, status):
    response = archive(dc, token=dc.ALICE_TOKEN, **params)
    assert response.status_code == status
    assert dc.errors(response)
