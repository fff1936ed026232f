"""The copied recipes from the seed documents, run verbatim with curl and git against the emulator."""

import io
import json
import subprocess
import tarfile
import urllib.parse


def curl(bb, *args):
    """curl as in the recipes, plus the emulator's CA; returns (status, body)."""
    argv = ['curl', '-sS', '--cacert', bb.ca_file, '-o', '-', '-w', '\n%{http_code}'] + list(args)
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors='replace')
    body, dummy, status = result.stdout.rpartition(b'\n')
    return int(status), body


def curl_json(bb, *args):
    status, body = curl(bb, *args)
    return status, json.loads(body)


def mint_with_curl(bb):
    # curl -X POST -u "key:secret" https://bitbucket.org/site/oauth2/access_token -d grant_type=client_credentials
    key, secret = bb.ALICE_CONSUMER
    status, token = curl_json(bb, '-X', 'POST', '-u', '%s:%s' % (key, secret), bb.token_url, '-d', 'grant_type=client_credentials')
    assert status == 200
    assert token['token_type'] == 'bearer'
    assert token['expires_in'] == 7200
    return token['access_token']


def test_client_credentials_then_clone(bb, tmp_path):
    """The recipe pastes the token into the URL as is. Real Bitbucket tokens are standard base64 and
    break that URL when they hold a '/' ("URL using bad/illegal format", PrefectHQ/prefect#19419);
    percent-encoded, every token clones."""
    seen = {'raw-ok': 0, 'raw-broken': 0}
    for attempt in range(40):
        token = mint_with_curl(bb)
        # git clone https://x-token-auth:{token}@bitbucket.org/{ws}/{repo}.git
        url = 'https://x-token-auth:{token}@{host}/acme/api.git'.format(token=token, host=bb.git_url.split('://', 1)[1])
        dest = tmp_path / ('raw-%d' % attempt)
        result = bb.git('clone', '--quiet', url, str(dest), check=False)
        if '/' in token:
            assert result.returncode != 0
            assert 'URL using bad/illegal format' in result.stderr
            seen['raw-broken'] += 1
            dest = tmp_path / ('encoded-%d' % attempt)
            bb.clone(bb.clone_url('acme', 'api', 'x-token-auth', token), dest)
        else:
            assert result.returncode == 0, result.stderr
            seen['raw-ok'] += 1
        head = bb.git('rev-parse', 'HEAD', cwd=dest).stdout.strip()
        api = bb.get('/repositories/acme/api/refs/branches/main', headers=bb.bearer(token)).json()
        assert api['target']['hash'] == head
        if seen['raw-ok'] and seen['raw-broken']:
            return
    raise AssertionError('40 tokens and not both kinds (with and without "/"): %r' % seen)


def test_old_style_token_request(bb):
    # curl https://bitbucket.org/site/oauth2/access_token -d grant_type=client_credentials -u key:secret
    key, secret = bb.ALICE_CONSUMER
    status, token = curl_json(bb, bb.token_url, '-d', 'grant_type=client_credentials', '-u', '%s:%s' % (key, secret))
    assert status == 200
    assert token['access_token']


def test_secret_in_form_body_fails_like_bitbucket(bb):
    key, secret = bb.ALICE_CONSUMER
    status, body = curl_json(bb, '-X', 'POST', bb.token_url, '-d', 'grant_type=client_credentials',
                             '--data-urlencode', 'client_id=' + key, '--data-urlencode', 'client_secret=' + secret)
    assert status == 400
    assert body == {'error_description': 'Requests must be authenticated using OAuth client credentials', 'error': 'unauthorized_client'}


def authorization_code_with_curl(bb):
    """Open the authorize URL like the browser would, as alice; return the code from the callback."""
    key = bb.ALICE_CONSUMER[0]
    url = '%s/site/oauth2/authorize?client_id=%s&response_type=code&state=xyz&emulator_user=alice' % (bb.base_url, key)
    result = subprocess.run(['curl', '-sS', '--cacert', bb.ca_file, '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    status, location = result.stdout.split(' ', 1)
    assert status == '302'
    assert location.startswith('http://127.0.0.1:8976/?')
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query['state'] == ['xyz']
    return query['code'][0]


def test_authorization_code_recipe(bb):
    code = authorization_code_with_curl(bb)
    key, secret = bb.ALICE_CONSUMER
    # curl -X POST -u "{client_id}:{client_secret}" https://bitbucket.org/site/oauth2/access_token \
    #   -d grant_type=authorization_code -d code={code}
    status, token = curl_json(bb, '-X', 'POST', '-u', '{client_id}:{client_secret}'.format(client_id=key, client_secret=secret),
                              bb.token_url, '-d', 'grant_type=authorization_code', '-d', 'code={code}'.format(code=code))
    assert status == 200
    assert token['expires_in'] == 7200
    assert token['token_type'] == 'bearer'
    assert token['state'] == 'authorization_code'
    assert token['refresh_token']
    # curl https://api.bitbucket.org/2.0/repositories/{workspace_name} --header "Authorization: Bearer {access_token}"
    status, listing = curl_json(bb, bb.api_url + '/repositories/acme', '--header', 'Authorization: Bearer {access_token}'.format(**token))
    assert status == 200
    assert listing['size'] == 254
    assert len(listing['values']) == 10
    # The same code a second time is refused.
    status, again = curl_json(bb, '-X', 'POST', '-u', '%s:%s' % (key, secret), bb.token_url,
                              '-d', 'grant_type=authorization_code', '-d', 'code=' + code)
    assert status == 400
    assert again['error'] == 'invalid_grant'


def test_stack_overflow_listing_request(bb):
    token = bb.alice_token()
    # curl --request GET --url 'https://api.bitbucket.org/2.0/repositories/pageant?page=1' \
    #   --header 'Authorization: Bearer {oauth_token}' --header 'Accept: application/json'
    status, listing = curl_json(bb, '--request', 'GET', '--url', bb.api_url + '/repositories/acme?page=1',
                                '--header', 'Authorization: Bearer ' + token, '--header', 'Accept: application/json')
    assert status == 200
    assert listing['page'] == 1
    assert listing['size'] == 254


def test_query_parameter_token_recipe(bb, legacy_bb):
    # ?access_token=<access_token> on a non-POST request: gone in current Bitbucket, accepted by the legacy one.
    token = bb.alice_token()
    status, body = curl_json(bb, bb.api_url + '/repositories/acme/api?access_token=' + urllib.parse.quote(token, safe=''))
    assert status == 404
    assert body['error']['message'] == bb.REPO_NOT_FOUND
    token = legacy_bb.alice_token()
    status, body = curl_json(legacy_bb, legacy_bb.api_url + '/repositories/acme/api?access_token=' + urllib.parse.quote(token, safe=''))
    assert status == 200
    assert body['full_name'] == 'acme/api'


def test_archive_download_recipe(bb):
    # DOWNLOAD_TAG_URL = "https://bitbucket.org/{workspace}/{repo_slug}/get/{tag}.tar.gz", sent with a Bearer header
    token = bb.alice_token()
    status, content = curl(bb, '--header', 'Authorization: Bearer ' + token, bb.base_url + '/acme/api/get/v1.0.0.tar.gz')
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(content), mode='r:gz') as archive:
        assert [member for member in archive.getmembers() if member.isfile()]
