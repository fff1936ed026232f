"""Shared helpers for the Bitbucket emulator test suite.

The helpers talk to the emulator the way real clients talk to Bitbucket Cloud: requests with the
emulator's CA, curl and git as subprocesses. Credentials come from the bundled demo data.
"""

import base64
import os
import subprocess
import urllib.parse

import pytest
import requests

TIMEOUT = 60

ALICE = 'alice'
ALICE_EMAIL = 'alice@example.com'
ALICE_PASSWORD = 'alice-account-password'
ALICE_APP_PASSWORD = 'alice-app-password-1'
ALICE_API_TOKEN = 'ATATT3xFfGF0alice+api/token='
ALICE_UNSCOPED_API_TOKEN = 'ATATT3xFfGF0alice-unscoped'
BOB = 'bob'
BOB_APP_PASSWORD = 'bob-app-password-1'
ACME_WAT = 'ATCTT3xFfGN0acme+workspace/token='

ALICE_CONSUMER = ('demoKey1234567890ab', 'demoSecret+With/Odd=Chars0123456789')
ALICE_CALLBACK = 'http://127.0.0.1:8976/'
BOB_CONSUMER = ('bobKey1234567890abcd', 'bobSecret0123456789abcdef')
BOB_CALLBACK = 'http://127.0.0.1:8977/'

# Repositories of the demo data: slug -> (project key, private, language, branches, tags).
ACME_REPOS = {
    'api': ('PROJ', True, 'python', ['main', 'release/1.x'], ['v1.0.0']),
    'web': ('PROJ', True, 'javascript', ['main', 'develop'], ['v2.3.0', 'v2.4.0']),
    'docs': ('DOC', False, '', ['master'], []),
    'infra': ('OPS', True, 'shell', ['main'], ['v0.1.0']),
}
GENERATED_COUNT = 250
GENERATED_PREFIX = 'svc-'

REPO_NOT_FOUND = ("The requested repository either does not exist or you do not have access. "
                  "If you believe this repository exists and you have access, make sure you're authenticated.")
TOKEN_EXPIRED = 'Access token expired. Use your refresh token to obtain a new access token.'
TOKEN_INVALID = 'Token is invalid, expired, or not supported for this endpoint.'
RATE_LIMITED = 'Rate limit for this resource has been exceeded'


def bearer(token):
    return {'Authorization': 'Bearer ' + token}


def basic(user, password):
    raw = ('%s:%s' % (user, password)).encode()
    return {'Authorization': 'Basic ' + base64.b64encode(raw).decode()}


def error_message(response):
    """The message of a Bitbucket JSON error envelope."""
    body = response.json()
    assert body['type'] == 'error'
    return body['error']['message']


class Bitbucket:
    """A client for one running emulator, with the demo data's credentials at hand."""

    ALICE = ALICE
    ALICE_EMAIL = ALICE_EMAIL
    ALICE_PASSWORD = ALICE_PASSWORD
    ALICE_APP_PASSWORD = ALICE_APP_PASSWORD
    ALICE_API_TOKEN = ALICE_API_TOKEN
    ALICE_UNSCOPED_API_TOKEN = ALICE_UNSCOPED_API_TOKEN
    BOB = BOB
    BOB_APP_PASSWORD = BOB_APP_PASSWORD
    ACME_WAT = ACME_WAT
    ALICE_CONSUMER = ALICE_CONSUMER
    ALICE_CALLBACK = ALICE_CALLBACK
    BOB_CONSUMER = BOB_CONSUMER
    BOB_CALLBACK = BOB_CALLBACK
    ACME_REPOS = ACME_REPOS
    GENERATED_COUNT = GENERATED_COUNT
    GENERATED_PREFIX = GENERATED_PREFIX
    REPO_NOT_FOUND = REPO_NOT_FOUND
    TOKEN_EXPIRED = TOKEN_EXPIRED
    TOKEN_INVALID = TOKEN_INVALID
    RATE_LIMITED = RATE_LIMITED

    bearer = staticmethod(bearer)
    basic = staticmethod(basic)
    error_message = staticmethod(error_message)

    def __init__(self, emulator, tmp_path):
        self.emu = emulator
        self.tmp_path = tmp_path
        self.ca_file = emulator.ca_file
        self.base_url = emulator.base_url.rstrip('/')
        self.api_url = emulator.api_url.rstrip('/')
        self.token_url = emulator.token_url
        self.git_url = emulator.git_url.rstrip('/')

    # ---- plain HTTP ----
    def request(self, method, url, **kwargs):
        if not url.startswith('http'):
            url = self.api_url + url
        kwargs.setdefault('verify', self.ca_file)
        kwargs.setdefault('timeout', TIMEOUT)
        kwargs.setdefault('allow_redirects', False)
        return requests.request(method, url, **kwargs)

    def get(self, url, **kwargs):
        return self.request('GET', url, **kwargs)

    def web(self, path, **kwargs):
        """GET on the web host (archives, git, authorize)."""
        return self.get(self.base_url + path, **kwargs)

    # ---- token endpoint ----
    def token_request(self, data, auth=None, headers=None):
        return requests.post(self.token_url, data=data, auth=auth, headers=headers,
                             verify=self.ca_file, timeout=TIMEOUT, allow_redirects=False)

    def client_credentials(self, consumer=ALICE_CONSUMER):
        response = self.token_request({'grant_type': 'client_credentials'}, auth=consumer)
        assert response.status_code == 200, response.text
        return response.json()

    def authorize(self, client_id=ALICE_CONSUMER[0], user=ALICE, state='xyz', use_header=False):
        """Run the browser half of the authorization code flow; return the 302 response."""
        params = {'client_id': client_id, 'response_type': 'code'}
        if state is not None:
            params['state'] = state
        headers = {}
        if use_header:
            headers['X-Emulator-User'] = user
        else:
            params['emulator_user'] = user
        return self.get(self.base_url + '/site/oauth2/authorize', params=params, headers=headers)

    def authorization_code(self, consumer=ALICE_CONSUMER, user=ALICE):
        response = self.authorize(client_id=consumer[0], user=user)
        assert response.status_code == 302, response.text
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers['Location']).query)
        return query['code'][0]

    def code_grant(self, consumer=ALICE_CONSUMER, user=ALICE):
        code = self.authorization_code(consumer, user)
        response = self.token_request({'grant_type': 'authorization_code', 'code': code}, auth=consumer)
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token, consumer=ALICE_CONSUMER):
        return self.token_request({'grant_type': 'refresh_token', 'refresh_token': refresh_token}, auth=consumer)

    def alice_token(self):
        return self.client_credentials()['access_token']

    # ---- API helpers ----
    def list_all(self, path, headers=None, params=None, max_pages=100):
        """Follow `next` links; return (pages, values)."""
        pages = []
        values = []
        url = self.api_url + path
        response = self.get(url, headers=headers, params=params)
        while True:
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page)
            values.extend(page['values'])
            if 'next' not in page:
                return pages, values
            assert len(pages) < max_pages, 'pagination does not end'
            response = self.get(page['next'], headers=headers)

    def acme_slugs(self, headers, **params):
        params.setdefault('pagelen', 100)
        return [repo['slug'] for repo in self.list_all('/repositories/acme', headers=headers, params=params)[1]]

    # ---- git ----
    def clone_url(self, workspace, slug, user=None, password=None):
        split = urllib.parse.urlsplit(self.git_url)
        userinfo = ''
        if user is not None:
            userinfo = urllib.parse.quote(user, safe='')
            if password is not None:
                userinfo += ':' + urllib.parse.quote(password, safe='')
            userinfo += '@'
        path = split.path.rstrip('/') + '/%s/%s.git' % (workspace, slug)
        return '%s://%s%s%s' % (split.scheme, userinfo, split.netloc, path)

    def git_env(self):
        home = self.tmp_path / 'git-home'
        home.mkdir(exist_ok=True)
        env = dict(os.environ)
        # GIT_SSL_CAINFO would override -c http.sslCAInfo, so set it to the same file.
        env.update({'HOME': str(home), 'GIT_TERMINAL_PROMPT': '0', 'GIT_CONFIG_NOSYSTEM': '1', 'GIT_SSL_CAINFO': self.ca_file,
                    'GIT_ASKPASS': '/bin/false', 'SSH_ASKPASS': '/bin/false', 'LC_ALL': 'C'})
        env.pop('GIT_CONFIG_GLOBAL', None)
        return env

    def git(self, *args, cwd=None, check=True, timeout=120, text=True):
        argv = ['git', '-c', 'http.sslCAInfo=' + self.ca_file, '-c', 'credential.helper=', '-c', 'protocol.version=2'] + list(args)
        result = subprocess.run(argv, cwd=cwd, env=self.git_env(), capture_output=True, text=text, timeout=timeout, check=False)
        if check:
            assert result.returncode == 0, 'git %s failed: %s' % (args[0], result.stderr[-2000:])
        return result

    def clone(self, url, dest, check=True, extra=()):
        return self.git('clone', '--quiet', *extra, url, str(dest), check=check)

    def ls_remote(self, url):
        """Map ref name -> hash from `git ls-remote`."""
        result = self.git('ls-remote', url)
        refs = {}
        for line in result.stdout.splitlines():
            sha, ref = line.split('\t')
            refs[ref] = sha
        return refs


@pytest.fixture
def bb(emulator, tmp_path):
    """Client for the shared `current` mode emulator (tests/conftest.py's `emulator`)."""
    return Bitbucket(emulator, tmp_path)


@pytest.fixture
def legacy_bb(legacy_emulator, tmp_path):
    """Client for the shared `legacy` mode emulator."""
    return Bitbucket(legacy_emulator, tmp_path)


@pytest.fixture
def bitbucket_for(tmp_path):
    """Wrap any emulator (e.g. one from make_emulator) in a client."""
    def wrap(emulator):
        return Bitbucket(emulator, tmp_path)
    return wrap


# ---------------------------------------------------------------- Data Center flavour

DC_ALICE_PASSWORD = 'alice-password-1'
DC_ALICE_TOKEN = 'dc-personal-read-0123456789abcdefghij'
DC_BOB_TOKEN = 'dc-personal-bob-0123456789abcdefghijk'
DC_PROJECT_TOKEN = 'dc-project-ops-read-0123456789abcdefg'
DC_REPO_TOKEN = 'dc-repo-deploy-read-0123456789abcde'
DC_CLIENT_ID = 'dc-client-0123456789abcdef'
DC_CLIENT_SECRET = 'dc-secret+With/Odd=Chars0123456789'
DC_REDIRECT_URI = 'http://127.0.0.1:8977/callback'
# Repositories of the bundled Data Center data: KEY/slug -> (branches, tags).
DC_REPOS = {'OPS/deploy': (['main', 'release/1.x'], ['v1.0.0']), 'OPS/config': (['main'], []), 'PUB/docs': (['main'], [])}
DC_GENERATED = ['svc-%03d' % number for number in range(1, 61)]
DC_OPS_SLUGS = ['deploy', 'config'] + DC_GENERATED


def dc_errors(response):
    """The messages of a Data Center error envelope (which must have context and exceptionName too)."""
    body = response.json()
    assert set(body) == {'errors'}
    for error in body['errors']:
        assert set(error) == {'context', 'message', 'exceptionName'}
    return [error['message'] for error in body['errors']]


class DataCenter:
    """A client for one running Data Center flavour emulator, with the bundled data's credentials at hand."""

    ALICE_PASSWORD = DC_ALICE_PASSWORD
    ALICE_TOKEN = DC_ALICE_TOKEN
    BOB_TOKEN = DC_BOB_TOKEN
    PROJECT_TOKEN = DC_PROJECT_TOKEN
    REPO_TOKEN = DC_REPO_TOKEN
    CLIENT_ID = DC_CLIENT_ID
    CLIENT_SECRET = DC_CLIENT_SECRET
    REDIRECT_URI = DC_REDIRECT_URI
    REPOS = DC_REPOS
    GENERATED = DC_GENERATED
    OPS_SLUGS = DC_OPS_SLUGS
    errors = staticmethod(dc_errors)
    basic = staticmethod(basic)

    def __init__(self, emulator, tmp_path):
        self.emu = emulator
        self.tmp_path = tmp_path
        self.ca_file = emulator.ca_file
        self.base_url = emulator.base_url.rstrip('/')
        self.api_url = emulator.api_url.rstrip('/')
        self.token_url = emulator.token_url
        self.authorize_url = emulator.authorize_url
        self.git_url = emulator.git_url.rstrip('/')

    def get(self, url, token=None, **kwargs):
        """GET url (a path is under api_url); token adds a Bearer header."""
        if not url.startswith('http'):
            url = self.api_url + url
        if token is not None:
            kwargs.setdefault('headers', {})['Authorization'] = 'Bearer ' + token
        kwargs.setdefault('verify', self.ca_file)
        kwargs.setdefault('timeout', TIMEOUT)
        kwargs.setdefault('allow_redirects', False)
        return requests.get(url, **kwargs)

    def list_all(self, path, token=None, params=None, max_pages=100, **kwargs):
        """Follow nextPageStart; return (pages, values)."""
        params = dict(params or {})
        pages, values = [], []
        while True:
            response = self.get(path, token=token, params=params, **kwargs)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page)
            values.extend(page['values'])
            if page['isLastPage']:
                assert 'nextPageStart' not in page
                return pages, values
            assert len(pages) < max_pages, 'paging does not end'
            params['start'] = page['nextPageStart']

    def slugs(self, path, token=None, params=None):
        """KEY/slug of every repository listed at path."""
        params = dict({'limit': 1000}, **(params or {}))
        return [repo['project']['key'] + '/' + repo['slug'] for repo in self.list_all(path, token, params=params)[1]]

    # ---- OAuth ----
    def authorize(self, **params):
        params.setdefault('client_id', DC_CLIENT_ID)
        params.setdefault('redirect_uri', DC_REDIRECT_URI)
        params.setdefault('response_type', 'code')
        return self.get(self.authorize_url, params=params)

    def code(self, **params):
        response = self.authorize(**params)
        assert response.status_code == 302, response.text
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers['Location']).query)
        assert 'error' not in query, query
        return query['code'][0]

    def token(self, data, params=None, client=True, **kwargs):
        data = dict(data)
        if client:
            data.setdefault('client_id', DC_CLIENT_ID)
            data.setdefault('client_secret', DC_CLIENT_SECRET)
        return requests.post(self.token_url, data=data, params=params, verify=self.ca_file, timeout=TIMEOUT,
                             allow_redirects=False, **kwargs)

    def oauth_tokens(self, scope='REPO_READ'):
        code = self.code(scope=scope)
        response = self.token({'grant_type': 'authorization_code', 'code': code, 'redirect_uri': DC_REDIRECT_URI})
        assert response.status_code == 200, response.text
        return response.json()

    # ---- git ----
    def scm_url(self, key, slug, user=None, password=None):
        split = urllib.parse.urlsplit(self.git_url)
        userinfo = ''
        if user is not None:
            userinfo = urllib.parse.quote(user, safe='') + ':' + urllib.parse.quote(password, safe='') + '@'
        return '%s://%s%s/scm/%s/%s.git' % (split.scheme, userinfo, split.netloc, key.lower(), slug)

    def git(self, *args, cwd=None, check=True, bearer=None):
        """git with the emulator's CA; bearer goes in http.extraHeader through the environment, as the collection does."""
        env = Bitbucket.git_env(self)
        if bearer is not None:
            env.update({'GIT_CONFIG_COUNT': '1', 'GIT_CONFIG_KEY_0': 'http.extraHeader',
                        'GIT_CONFIG_VALUE_0': 'Authorization: Bearer ' + bearer})
        argv = ['git', '-c', 'credential.helper=', '-c', 'protocol.version=2'] + list(args)
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert result.returncode == 0, 'git %s failed: %s' % (args[0], result.stderr[-2000:])
        return result

    def ls_remote(self, url, bearer=None):
        refs = {}
        for line in self.git('ls-remote', url, bearer=bearer).stdout.splitlines():
            sha, ref = line.split('\t')
            refs[ref] = sha
        return refs


@pytest.fixture
def dc(dc_emulator, tmp_path):
    """Client for the shared Data Center emulator (tests/conftest.py's `dc_emulator`)."""
    return DataCenter(dc_emulator, tmp_path)


@pytest.fixture
def dc_for(tmp_path):
    """Wrap any Data Center emulator (e.g. one from make_emulator) in a client."""
    def wrap(emulator):
        return DataCenter(emulator, tmp_path)
    return wrap
