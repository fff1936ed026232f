"""OAuth 2.0 token endpoint, authorize endpoint and API authentication of the emulator."""

import concurrent.futures
import urllib.parse

import pytest


def form_error(response):
    assert response.headers['Content-Type'].startswith('application/json')
    body = response.json()
    if 'error_description' in body:
        # Bitbucket puts error_description first.
        assert list(body) == ['error_description', 'error']
    return body


# ---------------------------------------------------------------- client credentials

def test_client_credentials_current_mode(bb):
    response = bb.token_request({'grant_type': 'client_credentials'}, auth=bb.ALICE_CONSUMER)
    assert response.status_code == 200
    assert response.headers['Content-Type'].startswith('application/json')
    body = response.json()
    assert set(body) == {'access_token', 'scope', 'expires_in', 'token_type', 'state'}
    assert body['expires_in'] == 7200
    assert body['token_type'] == 'bearer'
    assert body['state'] == 'client_credentials'
    assert sorted(body['scope'].split()) == ['account', 'repository']
    assert len(body['access_token']) >= 20


def test_client_credentials_legacy_mode(legacy_bb):
    body = legacy_bb.client_credentials()
    assert 'scope' not in body
    assert sorted(body['scopes'].split()) == ['account', 'repository']
    assert body['expires_in'] == 7200
    assert body['token_type'] == 'bearer'
    assert body['state'] == 'client_credentials'
    assert body['refresh_token']
    assert body['refresh_token'] != body['access_token']


def test_client_credentials_tokens_are_distinct(bb):
    tokens = {bb.alice_token() for dummy in range(3)}
    assert len(tokens) == 3


def test_client_credentials_token_works_on_api(bb):
    token = bb.alice_token()
    response = bb.get('/repositories/acme/api', headers=bb.bearer(token))
    assert response.status_code == 200
    assert response.json()['full_name'] == 'acme/api'


# ---------------------------------------------------------------- token endpoint errors

def test_secret_in_body_without_basic_is_refused(bb):
    client_id, secret = bb.ALICE_CONSUMER
    response = bb.token_request({'grant_type': 'client_credentials', 'client_id': client_id, 'client_secret': secret})
    assert response.status_code == 400
    assert form_error(response) == {'error_description': 'Requests must be authenticated using OAuth client credentials',
                                    'error': 'unauthorized_client'}


def test_bearer_client_auth_is_not_basic(bb):
    response = bb.token_request({'grant_type': 'client_credentials'},
                                headers={'Authorization': 'Bearer ' + bb.basic(*bb.ALICE_CONSUMER)['Authorization'][6:]})
    assert response.status_code != 200
    assert 'access_token' not in response.text


@pytest.mark.parametrize('which', ['wrong-secret', 'unknown-key', 'other-consumers-secret'])
def test_wrong_client_credentials(bb, which):
    client_id, secret = bb.ALICE_CONSUMER
    auth = {'wrong-secret': (client_id, secret + 'x'),
            'unknown-key': ('noSuchKey000000000', secret),
            'other-consumers-secret': (client_id, bb.BOB_CONSUMER[1])}[which]
    response = bb.token_request({'grant_type': 'client_credentials'}, auth=auth)
    assert response.status_code == 400
    assert form_error(response) == {'error_description': 'Invalid OAuth client credentials', 'error': 'unauthorized_client'}


def test_missing_grant_type(bb):
    response = bb.token_request({}, auth=bb.ALICE_CONSUMER)
    assert response.status_code == 400
    assert form_error(response) == {'error_description': 'Unsupported grant type: None', 'error': 'invalid_grant'}


@pytest.mark.parametrize('grant', ['password', 'implicit', 'bogus'])
def test_unsupported_grant_type(bb, grant):
    response = bb.token_request({'grant_type': grant, 'username': 'alice', 'password': bb.ALICE_PASSWORD}, auth=bb.ALICE_CONSUMER)
    assert response.status_code == 400
    body = form_error(response)
    assert body['error'] == 'invalid_grant'
    assert 'access_token' not in body


@pytest.mark.parametrize('refresh_token', ['no-such-refresh-token', ''])
def test_bad_refresh_token(bb, refresh_token):
    response = bb.refresh(refresh_token)
    assert response.status_code == 400
    assert form_error(response) == {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'}


def test_refresh_token_of_other_consumer_is_refused(bb):
    refresh_token = bb.code_grant()['refresh_token']
    response = bb.refresh(refresh_token, consumer=bb.BOB_CONSUMER)
    assert response.status_code == 400
    assert form_error(response) == {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'}
    # The refusal must not have consumed the token for its real consumer.
    assert bb.refresh(refresh_token).status_code == 200


def test_token_endpoint_rejects_get(bb):
    response = bb.get(bb.token_url, auth=bb.ALICE_CONSUMER, params={'grant_type': 'client_credentials'})
    assert response.status_code != 200
    assert 'access_token' not in response.text


# ---------------------------------------------------------------- authorization code

def callback_query(response):
    location = response.headers['Location']
    split = urllib.parse.urlsplit(location)
    return location, split, urllib.parse.parse_qs(split.query, keep_blank_values=True)


@pytest.mark.parametrize('use_header', [False, True], ids=['query-param', 'header'])
def test_authorize_redirects_to_callback_with_code_and_state(bb, use_header):
    response = bb.authorize(use_header=use_header)
    assert response.status_code == 302
    location, split, query = callback_query(response)
    assert location.startswith(bb.ALICE_CALLBACK + '?')
    assert (split.scheme, split.netloc, split.path) == ('http', '127.0.0.1:8976', '/')
    assert set(query) == {'code', 'state'}
    assert query['state'] == ['xyz']
    assert len(query['code']) == 1 and query['code'][0]


def test_authorize_without_state(bb):
    response = bb.authorize(state=None)
    assert response.status_code == 302
    query = callback_query(response)[2]
    assert set(query) == {'code'}


def test_authorize_uses_the_consumers_own_callback(bb):
    response = bb.authorize(client_id=bb.BOB_CONSUMER[0], user='bob')
    assert response.status_code == 302
    location, dummy, query = callback_query(response)
    assert location.startswith(bb.BOB_CALLBACK + '?')
    assert query['state'] == ['xyz']


def test_authorize_codes_are_unique(bb):
    codes = {bb.authorization_code() for dummy in range(3)}
    assert len(codes) == 3


def test_authorize_unknown_client_does_not_issue_a_code(bb):
    response = bb.authorize(client_id='noSuchClient000000')
    assert 'code=' not in response.headers.get('Location', '')
    assert response.status_code != 302


def test_authorize_without_a_user_shows_login_not_a_code(bb):
    response = bb.get(bb.base_url + '/site/oauth2/authorize', params={'client_id': bb.ALICE_CONSUMER[0], 'response_type': 'code', 'state': 'xyz'})
    assert response.status_code != 302
    assert 'Location' not in response.headers
    unknown = bb.authorize(user='nobody-by-this-name')
    assert unknown.status_code != 302
    assert 'code=' not in unknown.headers.get('Location', '')


def test_authorize_rejects_a_foreign_redirect_uri(bb):
    params = {'client_id': bb.ALICE_CONSUMER[0], 'response_type': 'code', 'emulator_user': 'alice',
              'redirect_uri': 'http://evil.example/callback'}
    response = bb.get(bb.base_url + '/site/oauth2/authorize', params=params)
    assert 'evil.example' not in response.headers.get('Location', '')
    assert response.status_code == 400
    assert 'Invalid redirect_uri' in response.text


def test_authorize_implicit_grant_is_gone(bb):
    params = {'client_id': bb.ALICE_CONSUMER[0], 'response_type': 'token', 'emulator_user': 'alice'}
    response = bb.get(bb.base_url + '/site/oauth2/authorize', params=params)
    assert 'access_token' not in response.headers.get('Location', '')
    assert response.status_code != 302


def test_parallel_exchanges_of_one_code_issue_one_token(bb):
    code = bb.authorization_code()

    def exchange(index):
        return bb.token_request({'grant_type': 'authorization_code', 'code': code}, auth=bb.ALICE_CONSUMER).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(pool.map(exchange, range(10)))
    assert statuses == [200] + [400] * 9


def test_authorization_code_exchange(bb):
    code = bb.authorization_code()
    response = bb.token_request({'grant_type': 'authorization_code', 'code': code}, auth=bb.ALICE_CONSUMER)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {'access_token', 'refresh_token', 'expires_in', 'token_type', 'state', 'scope'}
    assert body['expires_in'] == 7200
    assert body['token_type'] == 'bearer'
    assert body['state'] == 'authorization_code'
    assert sorted(body['scope'].split()) == ['account', 'repository']
    assert body['refresh_token'] != body['access_token']
    user = bb.get('/user', headers=bb.bearer(body['access_token']))
    assert user.status_code == 200
    assert user.json()['username'] == 'alice'


def test_authorization_code_legacy_shape(legacy_bb):
    body = legacy_bb.code_grant()
    assert 'scope' not in body
    assert sorted(body['scopes'].split()) == ['account', 'repository']
    assert body['state'] == 'authorization_code'
    assert body['expires_in'] == 7200


def test_authorization_code_identifies_the_user(bb):
    body = bb.code_grant(consumer=bb.BOB_CONSUMER, user='bob')
    user = bb.get('/user', headers=bb.bearer(body['access_token']))
    assert user.status_code == 200
    assert user.json()['username'] == 'bob'


def test_authorization_code_reuse_is_refused(bb):
    code = bb.authorization_code()
    first = bb.token_request({'grant_type': 'authorization_code', 'code': code}, auth=bb.ALICE_CONSUMER)
    assert first.status_code == 200
    second = bb.token_request({'grant_type': 'authorization_code', 'code': code}, auth=bb.ALICE_CONSUMER)
    assert second.status_code == 400
    body = form_error(second)
    assert body['error'] == 'invalid_grant'
    assert 'access_token' not in body


@pytest.mark.parametrize('case', ['unknown', 'missing', 'other-consumer'])
def test_bad_authorization_code(bb, case):
    data = {'grant_type': 'authorization_code'}
    auth = bb.ALICE_CONSUMER
    if case == 'unknown':
        data['code'] = 'no-such-code'
    elif case == 'other-consumer':
        data['code'] = bb.authorization_code()
        auth = bb.BOB_CONSUMER
    response = bb.token_request(data, auth=auth)
    assert response.status_code == 400
    body = form_error(response)
    assert body['error'] == 'invalid_grant'
    assert 'access_token' not in body


# ---------------------------------------------------------------- refresh tokens

def test_refresh_rotates_in_current_mode(bb):
    first = bb.code_grant()
    response = bb.refresh(first['refresh_token'])
    assert response.status_code == 200
    second = response.json()
    assert second['expires_in'] == 7200
    assert second['token_type'] == 'bearer'
    assert second['state'] == 'refresh_token'
    assert 'scope' in second and 'scopes' not in second
    assert second['refresh_token'] != first['refresh_token']
    assert second['access_token'] != first['access_token']
    assert bb.get('/user', headers=bb.bearer(second['access_token'])).status_code == 200

    reused = bb.refresh(first['refresh_token'])
    assert reused.status_code == 400
    assert form_error(reused) == {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'}

    third = bb.refresh(second['refresh_token'])
    assert third.status_code == 200
    assert third.json()['refresh_token'] not in (first['refresh_token'], second['refresh_token'])


def test_parallel_refreshes_of_one_token_rotate_once(bb):
    refresh_token = bb.code_grant()['refresh_token']

    def refresh(index):
        response = bb.refresh(refresh_token)
        return response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(refresh, range(10)))
    winners = [body for status, body in results if status == 200]
    assert len(winners) == 1
    assert sorted(status for status, body in results) == [200] + [400] * 9
    assert all(body == {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'} for status, body in results if status == 400)
    assert bb.refresh(winners[0]['refresh_token']).status_code == 200


def test_refresh_is_stable_in_legacy_mode(legacy_bb):
    first = legacy_bb.code_grant()
    tokens = set()
    for dummy in range(3):
        response = legacy_bb.refresh(first['refresh_token'])
        assert response.status_code == 200
        body = response.json()
        assert body['refresh_token'] == first['refresh_token']
        assert 'scopes' in body and 'scope' not in body
        assert body['state'] == 'refresh_token'
        tokens.add(body['access_token'])
        assert legacy_bb.get('/user', headers=legacy_bb.bearer(body['access_token'])).status_code == 200
    assert len(tokens) == 3


def test_legacy_client_credentials_refresh_token_works(legacy_bb):
    body = legacy_bb.client_credentials()
    response = legacy_bb.refresh(body['refresh_token'])
    assert response.status_code == 200
    assert response.json()['refresh_token'] == body['refresh_token']


# ---------------------------------------------------------------- using tokens on the API

def test_query_access_token_ignored_in_current_mode(bb):
    token = bb.alice_token()
    private = bb.get('/repositories/acme/api', params={'access_token': token})
    assert private.status_code == 404
    assert bb.error_message(private) == bb.REPO_NOT_FOUND
    anonymous = bb.acme_slugs(None)
    assert 'docs' in anonymous and 'api' not in anonymous
    assert bb.acme_slugs(None, access_token=token) == anonymous
    assert bb.get('/user', params={'access_token': token}).status_code == 401


def test_query_access_token_accepted_in_legacy_mode(legacy_bb):
    token = legacy_bb.alice_token()
    private = legacy_bb.get('/repositories/acme/api', params={'access_token': token})
    assert private.status_code == 200
    assert private.json()['full_name'] == 'acme/api'
    listing = legacy_bb.get('/repositories/acme', params={'access_token': token, 'pagelen': 100})
    assert listing.status_code == 200
    assert listing.json()['size'] == 254


def test_header_token_works_in_both_modes(bb, legacy_bb):
    for client in (bb, legacy_bb):
        response = client.get('/repositories/acme', headers=client.bearer(client.alice_token()))
        assert response.status_code == 200
        assert response.json()['size'] == 254


def test_unknown_token_is_401(bb):
    response = bb.get('/repositories/acme', headers=bb.bearer('not-a-real-token'))
    assert response.status_code == 401
    assert bb.error_message(response) == bb.TOKEN_INVALID


def test_expired_token_then_refresh(bb):
    grant = bb.code_grant()
    cc_token = bb.alice_token()
    bb.emu.expire()
    for token in (grant['access_token'], cc_token):
        response = bb.get('/repositories/acme/api', headers=bb.bearer(token))
        assert response.status_code == 401
        assert response.headers['Content-Type'].startswith('application/json')
        assert response.json() == {'type': 'error', 'error': {'message': bb.TOKEN_EXPIRED}}
    refreshed = bb.refresh(grant['refresh_token'])
    assert refreshed.status_code == 200
    response = bb.get('/repositories/acme/api', headers=bb.bearer(refreshed.json()['access_token']))
    assert response.status_code == 200
    # Tokens minted after the expiry are not affected.
    assert bb.get('/repositories/acme/api', headers=bb.bearer(bb.alice_token())).status_code == 200


def test_scope_headers_on_oauth_requests(bb):
    response = bb.get('/repositories/acme', headers=bb.bearer(bb.alice_token()))
    assert response.status_code == 200
    assert set(response.headers['X-OAuth-Scopes'].replace(',', ' ').split()) == {'repository', 'account'}
    assert 'repository' in response.headers['X-Accepted-OAuth-Scopes'].replace(',', ' ').split()
    assert response.headers['X-Credential-Type']


def test_credential_type_headers(bb):
    app = bb.get('/user', headers=bb.basic(bb.ALICE, bb.ALICE_APP_PASSWORD))
    assert app.status_code == 200
    assert app.headers['X-Credential-Type'] == 'apppassword'
    wat = bb.get('/repositories/acme/api', headers=bb.bearer(bb.ACME_WAT))
    assert wat.status_code == 200
    assert wat.headers['X-Credential-Type'] == 'workspace_access_token'


def test_account_scope_only_consumer_cannot_list_repositories(bb):
    token = bb.client_credentials(consumer=bb.BOB_CONSUMER)['access_token']
    user = bb.get('/user', headers=bb.bearer(token))
    assert user.status_code == 200
    assert user.json()['username'] == 'bob'
    assert user.headers['X-OAuth-Scopes'].strip() == 'account'
    listing = bb.get('/repositories/bobspace', headers=bb.bearer(token))
    assert listing.status_code == 403
    assert 'values' not in listing.json()
    assert 'repository' in listing.headers['X-Accepted-OAuth-Scopes'].replace(',', ' ').split()
    single = bb.get('/repositories/bobspace/notes', headers=bb.bearer(token))
    assert single.status_code == 403


def test_lacking_scope_error_body_is_bitbucket_s(bb):
    # The message is Bitbucket's fixed sentence; the scopes are in detail (backstage#22383, gildas/bitbucket-cli#56).
    token = bb.client_credentials(consumer=bb.BOB_CONSUMER)['access_token']
    response = bb.get('/repositories/bobspace', headers=bb.bearer(token))
    assert response.status_code == 403
    assert response.json() == {'type': 'error', 'error': {
        'message': 'Your credentials lack one or more required privilege scopes.',
        'detail': {'required': ['repository'], 'granted': ['account']}}}
    wat = bb.get('/user', headers=bb.bearer(bb.ACME_WAT))
    assert wat.status_code == 403
    assert bb.error_message(wat) == 'Your credentials lack one or more required privilege scopes.'
    assert wat.json()['error']['detail'] == {'required': ['account'], 'granted': ['repository']}


# ---------------------------------------------------------------- Basic auth on the API

def test_app_password_basic(bb):
    response = bb.get('/user', auth=(bb.ALICE, bb.ALICE_APP_PASSWORD))
    assert response.status_code == 200
    assert response.json()['username'] == 'alice'
    repo = bb.get('/repositories/acme/api', auth=(bb.ALICE, bb.ALICE_APP_PASSWORD))
    assert repo.status_code == 200


def test_api_token_basic_with_email(bb):
    response = bb.get('/user', auth=(bb.ALICE_EMAIL, bb.ALICE_API_TOKEN))
    assert response.status_code == 200
    assert response.json()['username'] == 'alice'
    repo = bb.get('/repositories/acme/api', auth=(bb.ALICE_EMAIL, bb.ALICE_API_TOKEN))
    assert repo.status_code == 200


def test_app_password_with_email_is_refused(bb):
    response = bb.get('/user', auth=(bb.ALICE_EMAIL, bb.ALICE_APP_PASSWORD))
    assert response.status_code == 401


def test_unscoped_api_token_is_refused(bb):
    response = bb.get('/user', auth=(bb.ALICE_EMAIL, bb.ALICE_UNSCOPED_API_TOKEN))
    assert response.status_code == 401
    assert bb.error_message(response) == bb.TOKEN_INVALID


def test_account_password_is_refused_as_text(bb):
    response = bb.get('/user', auth=(bb.ALICE, bb.ALICE_PASSWORD))
    assert response.status_code == 401
    assert response.headers['Content-Type'].startswith('text/plain')
    assert response.headers['WWW-Authenticate'] == 'Basic realm="Bitbucket.org HTTP"'
    assert response.text.strip()
    assert not response.text.lstrip().startswith('{')


def test_wrong_app_password_is_401(bb):
    response = bb.get('/repositories/acme/api', auth=(bb.ALICE, 'wrong-app-password'))
    assert response.status_code == 401


def test_anonymous_user_endpoint_is_401(bb):
    assert bb.get('/user').status_code == 401


# ---------------------------------------------------------------- visibility

@pytest.mark.parametrize('who,slug', [('anonymous', 'api'), ('anonymous', 'web'), ('bob', 'api'), ('bob', 'infra')])
def test_private_repository_invisible_is_404(bb, who, slug):
    headers = bb.basic(bb.BOB, bb.BOB_APP_PASSWORD) if who == 'bob' else None
    response = bb.get('/repositories/acme/' + slug, headers=headers)
    assert response.status_code == 404
    assert response.json() == {'type': 'error', 'error': {'message': bb.REPO_NOT_FOUND}}


def test_workspace_access_token_is_limited_to_its_workspace(bb):
    own = bb.get('/repositories/acme/api', headers=bb.bearer(bb.ACME_WAT))
    assert own.status_code == 200
    other = bb.get('/repositories/bobspace/notes', headers=bb.bearer(bb.ACME_WAT))
    assert other.status_code == 404
    assert bb.error_message(other) == bb.REPO_NOT_FOUND


def test_alice_cannot_see_bobs_private_repository(bb):
    response = bb.get('/repositories/bobspace/notes', headers=bb.bearer(bb.alice_token()))
    assert response.status_code == 404
    assert bb.error_message(response) == bb.REPO_NOT_FOUND
    assert bb.get('/repositories/bobspace/notes', auth=(bb.BOB, bb.BOB_APP_PASSWORD)).status_code == 200


def test_missing_repository_is_404_with_same_message(bb):
    response = bb.get('/repositories/acme/no-such-repo', headers=bb.bearer(bb.alice_token()))
    assert response.status_code == 404
    assert bb.error_message(response) == bb.REPO_NOT_FOUND


def test_public_repository_is_visible_anonymously(bb):
    response = bb.get('/repositories/acme/docs')
    assert response.status_code == 200
    body = response.json()
    assert body['full_name'] == 'acme/docs'
    assert body['is_private'] is False
