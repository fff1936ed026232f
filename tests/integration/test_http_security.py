# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The HTTP layer against a hostile HTTPS server, through real ansible-playbook runs.

Redirects are never followed by the modules or the lookup; scheme mix-ups fail at once; echoes
in wide encodings are redacted; and what a hostile server puts in a successful answer (the
token it was sent, the client secret it decoded) comes out masked, including secrets that came
from BITBUCKET_* environment variables.
"""

import base64
import time

from urllib.parse import quote, quote_plus

import pytest

from hostile_server import HostileServer

CLIENT_ID = 'demoKey1234567890ab'
SECRET = 'demoSecret+With/Odd=Chars0123456789'
ACCESS_TOKEN = 'ATCTT3xFfGN0acme+workspace/token='
USERNAME = 'alice'
PASSWORD = 'ATATT3xFfGF0alice+api/token='
BASIC = base64.b64encode(('%s:%s' % (CLIENT_ID, SECRET)).encode()).decode()
# How AnsibleModule masks a no_log value: a whole value, or a part of one.
MASKS = ('VALUE_SPECIFIED_IN_NO_LOG_PARAMETER', '********')


def forms(*secrets):
    """Every form in which a secret could be echoed and must not appear."""
    found = []
    for secret in secrets:
        found.extend((secret, quote(secret, safe=''), quote_plus(secret)))
    return found


def unwidened(text):
    """text without the NULs (raw or JSON-escaped) that a UTF-16 or UTF-32 echo puts between characters."""
    return text.replace('\x00', '').replace('\\u0000', '')


@pytest.fixture(scope='module')
def plain():
    with HostileServer(tls=False) as server:
        yield server


def token_args(token_url, ca_file, tmp_path, **extra):
    args = {'client_id': CLIENT_ID, 'client_secret': '{{ client_secret }}', 'token_url': token_url, 'ca_path': ca_file,
            'cache_dir': str(tmp_path / 'cache')}
    args.update(extra)
    return {key: value for key, value in args.items() if value is not None}


def task(module, args, register=None):
    # No no_log: only the collection stands between a careless task and the secrets.
    entry = {'name': module, 'codeferry.bitbucket.%s' % module: args, 'ignore_errors': True}
    if register:
        entry['register'] = register
    return entry


def lookup_task(token_url, ca_file):
    return {'name': 'lookup', 'ignore_errors': True, 'ansible.builtin.debug': {
        'msg': "{{ lookup('codeferry.bitbucket.oauth_token', client_id='%s', client_secret=client_secret, token_url='%s', "
               "ca_path='%s', cache=false) | length }}" % (CLIENT_ID, token_url, ca_file)}}


def test_no_front_end_follows_a_redirect_with_credentials(evil, elsewhere, plain, playbook, tmp_path, assert_no_secrets):
    for target in (elsewhere, plain):
        evil.redirect_to = target.url + '/site/oauth2/access_token'
        token_url = evil.url + '/redirect/302/site/oauth2/access_token'
        api_url = evil.url + '/redirect/307/2.0'
        tasks = [
            task('oauth_token', token_args(token_url, evil.ca_file, tmp_path, cache=False)),
            task('repository_info', token_args(token_url, evil.ca_file, tmp_path, api_url=api_url, workspace='acme')),
            task('repository_info', {'access_token': '{{ access_token }}', 'api_url': api_url, 'ca_path': evil.ca_file,
                                     'workspace': 'acme'}),
            lookup_task(token_url, evil.ca_file),
        ]
        run = playbook.run(tasks, play_vars={'client_secret': SECRET, 'access_token': ACCESS_TOKEN}, verbosity=3)
        assert run.output.count('HTTP 302: refusing to follow a redirect to %s/site/oauth2/access_token;' % target.url) >= 3, run
        assert 'HTTP 307: refusing to follow a redirect to %s/site/oauth2/access_token;' % target.url in run.output
        assert target.connections == 0 and target.requests == [], 'a redirect was followed'
        assert_no_secrets(run.output, forms(SECRET, ACCESS_TOKEN) + [BASIC])


@pytest.mark.parametrize('encoding', ['utf-16-le', 'utf-16-be', 'utf-32', 'utf-32-be'])
def test_echoes_in_wide_encodings_are_redacted(encoding, evil, playbook, tmp_path, assert_no_secrets):
    token_url = '%s/echo-oauth/%s/site/oauth2/access_token' % (evil.url, encoding)
    api_url = '%s/echo/%s/2.0' % (evil.url, encoding)
    tasks = [
        task('oauth_token', token_args(token_url, evil.ca_file, tmp_path, cache=False)),
        task('repository_info', {'access_token': '{{ access_token }}', 'api_url': api_url, 'ca_path': evil.ca_file,
                                 'workspace': 'acme'}),
        lookup_task(token_url, evil.ca_file),
    ]
    run = playbook.run(tasks, play_vars={'client_secret': SECRET, 'access_token': ACCESS_TOKEN}, verbosity=4)
    # The echo was decoded (readable headers) and redacted where the credentials were.
    assert run.output.count('Authorization: Basic ********') >= 2, run
    assert 'Authorization: Bearer ********' in run.output
    assert_no_secrets(unwidened(run.output), forms(SECRET, ACCESS_TOKEN) + [BASIC])


def test_scheme_mix_ups_fail_at_once_and_say_so(evil, plain, playbook, tmp_path):
    tls_port_over_http = evil.url.replace('https://', 'http://') + '/site/oauth2/access_token'
    plain_port_over_https = plain.url.replace('http://', 'https://') + '/2.0'
    tasks = [
        task('oauth_token', token_args(tls_port_over_http, evil.ca_file, tmp_path, cache=False)),
        task('repository_info', {'access_token': '{{ access_token }}', 'api_url': plain_port_over_https,
                                 'ca_path': evil.ca_file, 'workspace': 'acme'}),
        task('oauth_token', token_args('http://bitbucket.example/site/oauth2/access_token', evil.ca_file, tmp_path)),
    ]
    started = time.monotonic()
    run = playbook.run(tasks, play_vars={'client_secret': SECRET, 'access_token': ACCESS_TOKEN})
    assert 'the server at 127.0.0.1:%d speaks only HTTPS, not plain HTTP; check the URL' % evil.port in run.output, run
    assert 'the server at 127.0.0.1:%d does not speak HTTPS (it answered in plain HTTP); check the URL' % plain.port in run.output
    assert "token_url must be an https:// URL: over http:// the credentials would cross the network in clear text" in run.output
    assert 'gave up after' not in run.output and 'connection dropped' not in run.output
    assert time.monotonic() - started < 60


def test_validate_certs_false_warns(evil, playbook, tmp_path):
    args = token_args(evil.url + '/site/oauth2/access_token', None, tmp_path, cache=False, validate_certs=False)
    run = playbook.run([task('oauth_token', args)], play_vars={'client_secret': SECRET})
    assert run.rc == 0, run
    assert 'validate_certs is false: TLS certificates are not verified' in run.output


def test_secrets_from_the_environment_are_masked_when_the_server_echoes_them(evil, playbook, tmp_path):
    """BITBUCKET_* secrets never appear, even where a hostile server puts them into a successful answer.

    The hostile token endpoint returns the client secret it decoded as a scope, and its API
    returns the caller's Authorization header and password as repository fields: only the
    front end's no_log masking stands between them and the output.
    """
    token_url = evil.url + '/site/oauth2/access_token'
    api_url = evil.url + '/2.0'
    common = {'token_url': token_url, 'api_url': api_url, 'ca_path': evil.ca_file, 'cache_dir': str(tmp_path / 'cache')}
    runs = []
    for env, module in (
            ({'BITBUCKET_CLIENT_ID': CLIENT_ID, 'BITBUCKET_CLIENT_SECRET': SECRET}, 'oauth_token'),
            ({'BITBUCKET_CLIENT_ID': CLIENT_ID, 'BITBUCKET_CLIENT_SECRET': SECRET}, 'repository_info'),
            ({'BITBUCKET_ACCESS_TOKEN': ACCESS_TOKEN}, 'repository_info'),
            ({'BITBUCKET_USERNAME': USERNAME, 'BITBUCKET_PASSWORD': PASSWORD}, 'repository_info')):
        args = dict(common, workspace='acme') if module == 'repository_info' else dict(common, cache=False)
        if module == 'oauth_token':
            del args['api_url']
        before = len(evil.requests)
        run = playbook.run([task(module, args, register='result')], save=['result'], env=env, verbosity=3)
        assert run.rc == 0, run
        assert len(evil.requests) > before
        runs.append((env, run))
    scopes = runs[0][1].results['result']['scopes']
    assert scopes[0] == 'repository' and scopes[1] in MASKS, 'the hostile token endpoint no longer echoes the secret: %r' % scopes
    for env, run in runs:
        secrets = [value for name, value in env.items() if name != 'BITBUCKET_CLIENT_ID' and name != 'BITBUCKET_USERNAME']
        for secret in secrets:
            assert secret not in run.output, '%s leaked into the output of a run' % sorted(env)
            assert secret not in str(run.results), '%s leaked into a registered result' % sorted(env)


def test_a_minted_token_and_the_client_secret_are_masked_in_an_api_module(evil, playbook, tmp_path):
    """repository_info mints at the hostile token endpoint, whose API then returns the token and the secret as data."""
    args = {'client_id': CLIENT_ID, 'client_secret': '{{ client_secret }}', 'token_url': evil.url + '/site/oauth2/access_token',
            'api_url': evil.url + '/2.0', 'ca_path': evil.ca_file, 'cache_dir': str(tmp_path / 'cache'), 'workspace': 'acme'}
    minted_before = len(evil.tokens)
    run = playbook.run([task('repository_info', args, register='repos')], save=['repos'], play_vars={'client_secret': SECRET},
                       verbosity=3)
    assert run.rc == 0, run
    minted = evil.tokens[minted_before:]
    assert len(minted) == 1
    (repo,) = run.results['repos']['repositories']
    # The server did echo both; the module masked them.
    assert repo['description'] == 'Bearer ********' and repo['name'] in MASKS
    for secret in minted + [SECRET]:
        assert secret not in run.output and secret not in str(run.results)


@pytest.mark.parametrize('transport', ['direct', 'controller'])
def test_git_follows_no_redirect_with_the_token(transport, evil, elsewhere, playbook, tmp_path, assert_no_secrets):
    """git asks its credential helper again for the host a redirect points to: the redirect must not be followed."""
    evil.redirect_to = elsewhere.url + '/acme/api.git/info/refs?service=git-upload-pack'
    before = elsewhere.connections
    args = {'repositories': [{'url': evil.url + '/redirect/302/acme/api.git', 'dest': str(tmp_path / 'api'), 'ref': 'main'}],
            'access_token': '{{ access_token }}', 'ca_path': evil.ca_file, 'transport': transport,
            'mirror_dir': str(tmp_path / 'mirrors')}
    if transport == 'controller':
        args['ca_content'] = open(evil.ca_file, encoding='utf-8').read()
        args['ca_path'] = str(tmp_path / 'host-ca.pem')
    run = playbook.run([task('git_checkout', args, register='co')], save=['co'], play_vars={'access_token': ACCESS_TOKEN},
                       verbosity=3)
    co = run.results['co']
    assert co['failed'] and co['repositories'][0]['failed'], co
    assert elsewhere.connections == before, 'git followed the redirect'
    assert not (tmp_path / 'api').exists()
    assert_no_secrets(run.output, forms(ACCESS_TOKEN))
