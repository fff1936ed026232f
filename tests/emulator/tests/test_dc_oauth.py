"""The Data Center flavour's OAuth 2.0 provider: authorize, the code grant with and without PKCE, refresh rotation."""

import base64
import hashlib
import urllib.parse

import pytest

# A fixed verifier keeps test ids stable (RFC 7636: 43 to 128 unreserved characters).
VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789'
S256 = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip('=')


def location_query(response):
    assert response.status_code == 302, response.text
    location = response.headers['Location']
    assert location.startswith('http://127.0.0.1:8977/callback?')
    return {key: values[0] for key, values in urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).items()}


def exchange(dc, code, **extra):
    data = {'grant_type': 'authorization_code', 'code': code, 'redirect_uri': dc.REDIRECT_URI}
    data.update(extra)
    return dc.token(data)


def assert_token_response(body, scope):
    assert set(body) == {'scope', 'access_token', 'token_type', 'expires_in', 'refresh_token'}
    assert body['scope'] == scope
    assert body['token_type'] == 'bearer'
    assert body['expires_in'] == 3600
    assert body['access_token'] != body['refresh_token']


def assert_oauth_error(response, status, error):
    assert response.status_code == status, response.text
    body = response.json()
    assert body['error'] == error
    assert body['error_description']
    assert response.headers['Cache-Control'] == 'no-store'


# ---------------------------------------------------------------- authorize

def test_authorize_redirects_with_code_and_state(dc):
    query = location_query(dc.authorize(state='st-1', scope='REPO_READ'))
    assert set(query) == {'code', 'state'}
    assert query['state'] == 'st-1'


def test_authorize_without_redirect_uri_uses_the_registered_one(dc):
    response = dc.get(dc.authorize_url, params={'client_id': dc.CLIENT_ID, 'response_type': 'code'})
    assert 'code' in location_query(response)


@pytest.mark.parametrize('params', [{'client_id': 'nope'}, {'redirect_uri': 'http://127.0.0.1:8977/other'},
                                    {'redirect_uri': 'https://evil.example/callback'}, {'emulator_user': 'nobody'}])
def test_authorize_refuses_without_redirecting(dc, params):
    response = dc.authorize(**params)
    assert response.status_code == 400
    assert 'Location' not in response.headers


@pytest.mark.parametrize('params,error', [
    ({'response_type': 'token'}, 'unsupported_response_type'),
    ({'scope': 'ADMIN_WRITE'}, 'invalid_scope'),
    ({'code_challenge': 'abc', 'code_challenge_method': 'MD5'}, 'invalid_request'),
    ({'code_challenge_method': 'S256'}, 'invalid_request'),
])
def test_authorize_errors_go_back_to_the_client(dc, params, error):
    query = location_query(dc.authorize(state='s', **params))
    assert query['error'] == error
    assert query['state'] == 's'
    assert 'code' not in query


# ---------------------------------------------------------------- code grant

def test_code_grant_with_s256(dc):
    code = dc.code(scope='REPO_READ', code_challenge=S256, code_challenge_method='S256')
    response = exchange(dc, code, code_verifier=VERIFIER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_token_response(body, 'REPO_READ')
    repo = dc.get('/projects/OPS/repos/deploy', token=body['access_token'])
    assert repo.status_code == 200
    assert repo.headers['X-AUSERNAME'] == 'alice'


def test_code_grant_with_plain(dc):
    code = dc.code(scope='REPO_READ REPO_WRITE', code_challenge=VERIFIER, code_challenge_method='plain')
    response = exchange(dc, code, code_verifier=VERIFIER)
    assert response.status_code == 200, response.text
    assert_token_response(response.json(), 'REPO_READ REPO_WRITE')


def test_challenge_without_method_is_plain(dc):
    code = dc.code(code_challenge=VERIFIER)
    assert exchange(dc, code, code_verifier=VERIFIER).status_code == 200


def test_code_grant_without_pkce(dc):
    response = exchange(dc, dc.code(scope='PROJECT_ADMIN'))
    assert response.status_code == 200, response.text
    assert_token_response(response.json(), 'PROJECT_ADMIN')


def test_default_scope_is_public_repos_and_reads_only_public(dc):
    body = exchange(dc, dc.code()).json()
    assert body['scope'] == 'PUBLIC_REPOS'
    token = body['access_token']
    assert dc.get('/projects/PUB/repos/docs', token=token).status_code == 200
    assert dc.get('/projects/OPS/repos/deploy', token=token).status_code == 404
    assert dc.slugs('/repos', token) == ['PUB/docs']


def test_oauth_token_acts_as_the_approving_user(dc):
    token = exchange(dc, dc.code(scope='REPO_READ', emulator_user='bob')).json()['access_token']
    response = dc.get('/repos', token=token)
    assert response.headers['X-AUSERNAME'] == 'bob'
    assert dc.slugs('/repos', token) == ['PUB/docs']


@pytest.mark.parametrize('verifier', ['wrong-verifier-' + 'x' * 40, None, S256], ids=['wrong', 'missing', 'challenge-itself'])
def test_wrong_or_missing_verifier_is_invalid_grant(dc, verifier):
    code = dc.code(code_challenge=S256, code_challenge_method='S256')
    extra = {} if verifier is None else {'code_verifier': verifier}
    assert_oauth_error(exchange(dc, code, **extra), 400, 'invalid_grant')
    # The code is used up: a later right verifier does not rescue it.
    assert_oauth_error(exchange(dc, code, code_verifier=VERIFIER), 400, 'invalid_grant')


def test_code_works_once(dc):
    code = dc.code()
    assert exchange(dc, code).status_code == 200
    assert_oauth_error(exchange(dc, code), 400, 'invalid_grant')


def test_unknown_code_and_redirect_mismatch(dc):
    assert_oauth_error(exchange(dc, 'not-a-code'), 400, 'invalid_grant')
    code = dc.code()
    assert_oauth_error(dc.token({'grant_type': 'authorization_code', 'code': code, 'redirect_uri': 'http://127.0.0.1:8977/x'}),
                       400, 'invalid_grant')


def test_client_parameters_in_the_query_string(dc):
    code = dc.code()
    response = dc.token({'grant_type': 'authorization_code', 'code': code, 'redirect_uri': dc.REDIRECT_URI}, client=False,
                        params={'client_id': dc.CLIENT_ID, 'client_secret': dc.CLIENT_SECRET})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize('client', ['wrong-secret', 'unknown-id', 'basic', 'none'])
def test_client_authentication_is_by_parameters(dc, client):
    data = {'grant_type': 'authorization_code', 'code': dc.code(), 'redirect_uri': dc.REDIRECT_URI}
    if client == 'wrong-secret':
        response = dc.token(dict(data, client_id=dc.CLIENT_ID, client_secret='wrong'), client=False)
    elif client == 'unknown-id':
        response = dc.token(dict(data, client_id='nope', client_secret=dc.CLIENT_SECRET), client=False)
    elif client == 'basic':
        response = dc.token(data, client=False, auth=(dc.CLIENT_ID, dc.CLIENT_SECRET))
    else:
        response = dc.token(data, client=False)
    assert_oauth_error(response, 401, 'invalid_client')


# ---------------------------------------------------------------- refresh and other grants

def test_refresh_rotates(dc):
    first = dc.oauth_tokens('REPO_READ')
    second = dc.token({'grant_type': 'refresh_token', 'refresh_token': first['refresh_token']})
    assert second.status_code == 200, second.text
    body = second.json()
    assert_token_response(body, 'REPO_READ')
    assert body['refresh_token'] != first['refresh_token'] and body['access_token'] != first['access_token']
    assert dc.get('/projects/OPS/repos/deploy', token=body['access_token']).status_code == 200
    # The used refresh token fails at once; the new one works.
    assert_oauth_error(dc.token({'grant_type': 'refresh_token', 'refresh_token': first['refresh_token']}), 400, 'invalid_grant')
    assert dc.token({'grant_type': 'refresh_token', 'refresh_token': body['refresh_token']}).status_code == 200


def test_refresh_with_unknown_token(dc):
    assert_oauth_error(dc.token({'grant_type': 'refresh_token', 'refresh_token': 'nope'}), 400, 'invalid_grant')


@pytest.mark.parametrize('grant', ['client_credentials', 'password', 'implicit', None])
def test_other_grants_are_unsupported(dc, grant):
    data = {} if grant is None else {'grant_type': grant}
    response = dc.token(data)
    assert_oauth_error(response, 400, 'unsupported_grant_type')


def test_token_endpoint_is_post_only(dc):
    assert dc.get(dc.token_url).status_code == 405


def test_expire_control_expires_oauth_tokens(make_emulator, dc_for):
    emulator = make_emulator(flavor='datacenter')
    dc = dc_for(emulator)
    tokens = dc.oauth_tokens('REPO_READ')
    assert dc.get('/repos', token=tokens['access_token']).status_code == 200
    assert emulator.expire()['expired'] == 1
    response = dc.get('/repos', token=tokens['access_token'])
    assert response.status_code == 401
    assert 'expired' in dc.errors(response)[0]
    result = dc.git('ls-remote', dc.scm_url('PUB', 'docs'), bearer=tokens['access_token'], check=False)
    assert result.returncode != 0
    # HTTP access tokens do not expire; refreshing gives a working access token again.
    assert dc.get('/repos', token=dc.ALICE_TOKEN).status_code == 200
    fresh = dc.token({'grant_type': 'refresh_token', 'refresh_token': tokens['refresh_token']}).json()
    assert dc.get('/repos', token=fresh['access_token']).status_code == 200
