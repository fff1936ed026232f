"""Git smart HTTP of the emulator: which credentials clone, which are refused, what a clone contains."""

import concurrent.futures

import pytest

UPLOAD_PACK = '/acme/api.git/info/refs?service=git-upload-pack'


def git_lines(bb, cwd, *args):
    return bb.git(*args, cwd=cwd).stdout.split()


def info_refs(bb, auth=None, path=UPLOAD_PACK):
    return bb.get(bb.git_url + path, auth=auth)


def assert_refused(response):
    assert response.status_code == 401
    assert b'refs/heads' not in response.content
    assert b'# service=' not in response.content
    assert response.headers['WWW-Authenticate'].startswith('Basic')


# ---------------------------------------------------------------- accepted credentials

def credentials(bb, kind):
    return {
        'oauth-x-token-auth': lambda: ('x-token-auth', bb.alice_token()),
        'oauth-code-x-token-auth': lambda: ('x-token-auth', bb.code_grant()['access_token']),
        'workspace-token-x-token-auth': lambda: ('x-token-auth', bb.ACME_WAT),
        'app-password': lambda: (bb.ALICE, bb.ALICE_APP_PASSWORD),
        'api-token-username': lambda: (bb.ALICE, bb.ALICE_API_TOKEN),
        'api-token-static-username': lambda: ('x-bitbucket-api-token-auth', bb.ALICE_API_TOKEN),
    }[kind]()


ACCEPTED = ['oauth-x-token-auth', 'oauth-code-x-token-auth', 'workspace-token-x-token-auth',
            'app-password', 'api-token-username', 'api-token-static-username']


@pytest.mark.parametrize('kind', ACCEPTED)
def test_info_refs_accepts(bb, kind):
    response = info_refs(bb, auth=credentials(bb, kind))
    assert response.status_code == 200
    assert response.headers['Content-Type'] == 'application/x-git-upload-pack-advertisement'
    assert response.content.startswith(b'001e# service=git-upload-pack\n')


@pytest.mark.parametrize('kind', ACCEPTED)
def test_ls_remote_accepts(bb, kind):
    user, password = credentials(bb, kind)
    refs = bb.ls_remote(bb.clone_url('acme', 'api', user, password))
    assert {ref for ref in refs if not ref.endswith('^{}')} == {'HEAD', 'refs/heads/main', 'refs/heads/release/1.x', 'refs/tags/v1.0.0'}
    assert refs['HEAD'] == refs['refs/heads/main']


@pytest.mark.parametrize('slug,kind', [('api', 'oauth-x-token-auth'), ('web', 'oauth-x-token-auth'), ('docs', 'oauth-x-token-auth'),
                                       ('infra', 'oauth-x-token-auth'), ('web', 'workspace-token-x-token-auth')])
def test_clone_has_every_branch_and_tag(bb, tmp_path, slug, kind):
    branches, tags = bb.ACME_REPOS[slug][3:]
    user, password = credentials(bb, kind)
    dest = tmp_path / slug
    bb.clone(bb.clone_url('acme', slug, user, password), dest)
    remote_branches = git_lines(bb, dest, 'for-each-ref', '--format=%(refname:lstrip=3)', 'refs/remotes/origin')
    assert set(remote_branches) - {'HEAD'} == set(branches)
    assert set(git_lines(bb, dest, 'tag', '--list')) == set(tags)
    assert git_lines(bb, dest, 'rev-parse', '--abbrev-ref', 'HEAD') == [branches[0]]
    for branch in branches:
        count = int(git_lines(bb, dest, 'rev-list', '--count', 'origin/' + branch)[0])
        assert count >= 2
    assert bb.git('fsck', '--no-dangling', cwd=dest).returncode == 0
    assert any(path.name != '.git' for path in dest.iterdir())


@pytest.mark.parametrize('protocol', ['0', '1', '2'])
def test_shallow_clone_every_protocol_version(bb, tmp_path, protocol):
    dest = tmp_path / 'shallow'
    url = bb.clone_url('acme', 'api', 'x-token-auth', bb.alice_token())
    bb.git('-c', 'protocol.version=' + protocol, 'clone', '--quiet', '--depth', '1', '--branch', 'release/1.x', url, str(dest))
    assert git_lines(bb, dest, 'rev-list', '--count', 'HEAD') == ['1']
    assert git_lines(bb, dest, 'rev-parse', 'HEAD') == [bb.ls_remote(url)['refs/heads/release/1.x']]


def test_clone_head_matches_api(bb, tmp_path):
    token = bb.alice_token()
    dest = tmp_path / 'api'
    bb.clone(bb.clone_url('acme', 'api', 'x-token-auth', token), dest)
    head = git_lines(bb, dest, 'rev-parse', 'HEAD')[0]
    branch = bb.get('/repositories/acme/api/refs/branches/main', headers=bb.bearer(token)).json()
    assert branch['target']['hash'] == head
    release = git_lines(bb, dest, 'rev-parse', 'origin/release/1.x')[0]
    api_release = bb.get('/repositories/acme/api/refs/branches/release%2F1.x', headers=bb.bearer(token)).json()
    assert api_release['target']['hash'] == release


def test_anonymous_clone_of_public_repository(bb, tmp_path):
    dest = tmp_path / 'docs'
    bb.clone(bb.clone_url('acme', 'docs'), dest)
    assert git_lines(bb, dest, 'rev-parse', '--abbrev-ref', 'HEAD') == ['master']


def test_bob_clones_his_own_repository(bb, tmp_path):
    dest = tmp_path / 'notes'
    bb.clone(bb.clone_url('bobspace', 'notes', bb.BOB, bb.BOB_APP_PASSWORD), dest)
    assert git_lines(bb, dest, 'rev-parse', '--abbrev-ref', 'HEAD') == ['main']


# ---------------------------------------------------------------- refused credentials

REFUSED = ['anonymous', 'wrong-token', 'account-password', 'wrong-app-password', 'email-with-app-password',
           'x-token-auth-with-api-token', 'unscoped-api-token', 'x-token-auth-with-app-password']


def refused_credentials(bb, kind):
    return {
        'anonymous': None,
        'wrong-token': ('x-token-auth', 'not-a-valid-token'),
        'account-password': (bb.ALICE, bb.ALICE_PASSWORD),
        'wrong-app-password': (bb.ALICE, 'wrong-app-password'),
        'email-with-app-password': (bb.ALICE_EMAIL, bb.ALICE_APP_PASSWORD),
        'x-token-auth-with-api-token': ('x-token-auth', bb.ALICE_API_TOKEN),
        'unscoped-api-token': ('x-bitbucket-api-token-auth', bb.ALICE_UNSCOPED_API_TOKEN),
        'x-token-auth-with-app-password': ('x-token-auth', bb.ALICE_APP_PASSWORD),
    }[kind]


@pytest.mark.parametrize('kind', REFUSED)
def test_info_refs_refuses(bb, kind):
    assert_refused(info_refs(bb, auth=refused_credentials(bb, kind)))


@pytest.mark.parametrize('service', ['git-upload-pack', 'git-receive-pack'])
def test_refused_on_every_git_endpoint(bb, service):
    auth = ('x-token-auth', 'not-a-valid-token')
    assert_refused(info_refs(bb, auth=auth, path='/acme/api.git/info/refs?service=' + service))
    response = bb.request('POST', bb.git_url + '/acme/api.git/' + service, auth=auth, data=b'0000',
                          headers={'Content-Type': 'application/x-%s-request' % service})
    assert response.status_code == 401
    assert b'refs/heads' not in response.content


def test_expired_token_refused_over_git(bb, tmp_path):
    token = bb.alice_token()
    assert info_refs(bb, auth=('x-token-auth', token)).status_code == 200
    bb.emu.expire()
    assert_refused(info_refs(bb, auth=('x-token-auth', token)))
    result = bb.clone(bb.clone_url('acme', 'api', 'x-token-auth', token), tmp_path / 'expired', check=False)
    assert result.returncode != 0
    assert not (tmp_path / 'expired' / '.git').exists()


@pytest.mark.parametrize('kind', ['wrong-token', 'account-password'])
def test_clone_fails_with_bad_credentials(bb, tmp_path, kind):
    user, password = refused_credentials(bb, kind)
    dest = tmp_path / 'refused'
    result = bb.clone(bb.clone_url('acme', 'api', user, password), dest, check=False)
    assert result.returncode != 0
    assert 'Authentication failed' in result.stderr or '401' in result.stderr
    assert not (dest / '.git').exists()


def test_valid_user_without_access_gets_no_content(bb, tmp_path):
    response = info_refs(bb, auth=(bb.BOB, bb.BOB_APP_PASSWORD))
    assert response.status_code in (401, 403, 404)
    assert b'refs/heads' not in response.content
    result = bb.clone(bb.clone_url('acme', 'api', bb.BOB, bb.BOB_APP_PASSWORD), tmp_path / 'bob', check=False)
    assert result.returncode != 0


def test_workspace_token_limited_to_its_workspace(bb):
    response = info_refs(bb, auth=('x-token-auth', bb.ACME_WAT), path='/bobspace/notes.git/info/refs?service=git-upload-pack')
    assert response.status_code in (401, 403, 404)
    assert b'refs/heads' not in response.content


def test_unknown_repository(bb):
    response = info_refs(bb, auth=(bb.ALICE, bb.ALICE_APP_PASSWORD), path='/acme/no-such-repo.git/info/refs?service=git-upload-pack')
    assert response.status_code == 404
    assert b'refs/heads' not in response.content


# ---------------------------------------------------------------- concurrency

def test_parallel_clones(bb, tmp_path):
    token = bb.alice_token()
    url = bb.clone_url('acme', 'api', 'x-token-auth', token)
    expected = bb.ls_remote(url)['refs/heads/main']

    def clone(index):
        dest = tmp_path / ('clone-%d' % index)
        result = bb.clone(url, dest, check=False)
        if result.returncode != 0:
            return 'failed: ' + result.stderr[-500:]
        return bb.git('rev-parse', 'HEAD', cwd=dest).stdout.strip()

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        heads = list(pool.map(clone, range(10)))
    assert heads == [expected] * 10
