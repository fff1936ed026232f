# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""git_checkout's Data Center parts without the emulator: credentials, the environment git gets, what real
git then sends (to a recording HTTP server on loopback), the url-mode refusal and the archive URL."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _git
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import ValidationError

TOKEN = 'dc-project-ops-read-0123456789abcdefg'
ODD = 'tok#en;with"quote\\and=chars '


def config_of(env):
    return [(env['GIT_CONFIG_KEY_%d' % i], env['GIT_CONFIG_VALUE_%d' % i]) for i in range(int(env['GIT_CONFIG_COUNT']))]


def proc_cmdlines():
    """Every command line on this machine that we may read: what `ps` shows."""
    lines = []
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                    lines.append(handle.read().replace(b'\0', b' ').decode('utf-8', 'replace'))
            except OSError:
                pass
    return lines


class Recorder(object):
    """A plain-HTTP server on loopback that records the Authorization headers of each request (all of them),
    and the command lines of the machine while git waits for its answer."""

    def __init__(self):
        self.requests = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

            def do_GET(self):  # pylint: disable=invalid-name
                recorder.requests.append({'path': self.path, 'authorization': self.headers.get_all('Authorization') or [],
                                          'cmdlines': proc_cmdlines()})
                body = b'no such repository\n'
                self.send_response(404)
                self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.base = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name='servers')
def servers_fixture():
    one, other = Recorder(), Recorder()
    yield one, other
    one.close()
    other.close()


def clean_environ(tmp_path):
    home = tmp_path / 'home'
    home.mkdir(exist_ok=True)
    return {'PATH': os.environ.get('PATH', os.defpath), 'HOME': str(home)}


# ---------------------------------------------------------------- credentials and the environment


def test_the_flavor_decides_the_kind_of_credential():
    assert _git.Credential.from_params({'access_token': TOKEN}).kind == 'token'
    assert _git.Credential.from_params({'access_token': TOKEN, 'flavor': 'cloud'}).kind == 'token'
    bearer = _git.Credential.from_params({'access_token': TOKEN, 'flavor': 'datacenter'})
    assert bearer.kind == 'bearer' and bearer.header_only
    assert bearer.git_header() == bearer.authorization() == 'Bearer ' + TOKEN
    basic = _git.Credential.from_params({'username': 'alice', 'password': 'dc-personal', 'flavor': 'datacenter'})
    assert basic.kind == 'basic' and not basic.header_only
    assert basic.authorization() == basic.git_header() == 'Basic YWxpY2U6ZGMtcGVyc29uYWw='
    with pytest.raises(ValidationError, match='flavor must be one of cloud, datacenter'):
        _git.Credential.from_params({'access_token': TOKEN, 'flavor': 'server'})
    with pytest.raises(ValidationError, match='without control characters'):
        _git.Credential.from_params({'access_token': TOKEN + '\r\nX-Injected: 1', 'flavor': 'datacenter'})


def test_a_bearer_token_is_a_scoped_extra_header_and_no_helper_answers():
    runner = _git.GitRunner(_git.Credential(None, TOKEN, 'bearer'), environ={'PATH': '/usr/bin'})
    repo = 'https://bitbucket.example:8443/scm/ops/deploy.git'
    env = runner._env(None, True, None, 'https://bitbucket.example:8443', repo)
    config = config_of(env)
    key = 'http.%s.extraHeader' % repo
    # The reset comes first, then the one header of this run, both keyed to the repository; nothing unscoped.
    assert [c for c in config if 'extraheader' in c[0].lower()] == [(key, ''), (key, 'Authorization: Bearer ' + TOKEN)]
    assert [c for c in config if c[0] == 'credential.helper'] == [('credential.helper', '')]
    assert ('http.followRedirects', 'false') in config
    assert _git.USERNAME_VAR not in env and _git.PASSWORD_VAR not in env
    assert runner.secrets() == [TOKEN]
    # Without the repository's URL, the origin is the scope.
    origin_key = 'http.https://bitbucket.example:8443/.extraHeader'
    assert [c for c in config_of(runner._env(None, True, None, 'https://bitbucket.example:8443')) if 'extraheader' in c[0].lower()] \
        == [(origin_key, ''), (origin_key, 'Authorization: Bearer ' + TOKEN)]
    # Commands without network get nothing of it.
    assert not any(TOKEN in value for value in runner._env(None, False, None, None).values())


def test_basic_on_data_center_stays_with_the_credential_helper():
    runner = _git.GitRunner(_git.Credential('alice', 'dc-personal', 'basic'), environ={'PATH': '/usr/bin'})
    repo = 'https://bitbucket.example/scm/ops/deploy.git'
    env = runner._env(None, True, None, 'https://bitbucket.example', repo)
    config = config_of(env)
    assert ('credential.helper', _git.HELPER) in config
    # No header of its own: the user's headers stay, as on Cloud ...
    assert [c for c in config if 'extraheader' in c[0].lower()] == []
    assert env[_git.PASSWORD_VAR] == 'dc-personal'
    # ... unless the checkout holds the AUTH_FILE of an earlier Bearer run: then no header goes at all.
    config = config_of(runner._env(None, True, None, 'https://bitbucket.example', repo, True))
    assert [c for c in config if 'extraheader' in c[0].lower()] == [('http.%s.extraHeader' % repo, '')]


@pytest.mark.parametrize('credential', [_git.Credential(_git.TOKEN_USERNAME, TOKEN, 'token'),
                                        _git.Credential('alice', 'app-password', 'basic'), None])
def test_a_cloud_run_sets_no_extra_header(credential):
    runner = _git.GitRunner(credential, environ={'PATH': '/usr/bin'})
    env = runner._env(None, True, None, 'https://bitbucket.org', 'https://bitbucket.org/acme/api.git')
    assert not [key for key in env if key.startswith('GIT_CONFIG_KEY_') and 'extraheader' in env[key].lower()]


def test_the_controller_header_is_scoped_when_the_origin_is_known():
    runner = _git.GitRunner(_git.Credential('alice', 'dc-personal', 'basic'), environ={'PATH': '/usr/bin'}, header_auth=True)
    config = config_of(runner._env(None, True, None, 'https://bitbucket.example'))
    assert config[-1] == ('http.https://bitbucket.example/.extraHeader', 'Authorization: Basic YWxpY2U6ZGMtcGVyc29uYWw=')
    assert ('credential.helper', _git.HELPER) not in config
    bearer = _git.GitRunner(_git.Credential(None, TOKEN, 'bearer'), environ={'PATH': '/usr/bin'}, header_auth=True)
    assert config_of(bearer._env(None, True, None, 'https://h'))[-1] == ('http.https://h/.extraHeader', 'Authorization: Bearer ' + TOKEN)
    assert bearer.secrets() == [TOKEN]
    with pytest.raises(_git.CheckoutError, match='needs the origin'):
        bearer._env(None, True, None, None)


def test_the_host_config_passed_in_the_environment_is_kept_before_ours():
    environ = {'PATH': '/usr/bin', 'GIT_CONFIG_COUNT': '1', 'GIT_CONFIG_KEY_0': 'http.proxy', 'GIT_CONFIG_VALUE_0': 'http://proxy:3128'}
    runner = _git.GitRunner(_git.Credential(None, TOKEN, 'bearer'), environ=environ)
    config = config_of(runner._env(None, True, None, 'https://h'))
    assert config[0] == ('http.proxy', 'http://proxy:3128')


# ---------------------------------------------------------------- what real git sends


def test_real_git_sends_one_bearer_header_to_the_origin_only_and_never_on_a_command_line(servers, tmp_path):
    one, other = servers
    repo = tmp_path / 'repo'
    subprocess.run(['git', 'init', '-q', str(repo)], check=True)
    # What an earlier run left: an include of an older token, and a header of the user's own.
    (repo / '.git' / _git.AUTH_FILE).write_text(_git.Credential(None, 'older-token-0123', 'bearer').auth_config(one.base))
    subprocess.run(['git', 'config', 'include.path', _git.AUTH_FILE], cwd=str(repo), check=True)
    subprocess.run(['git', 'config', 'http.extraHeader', 'Authorization: Basic dXNlcjpvd24='], cwd=str(repo), check=True)
    runner = _git.GitRunner(_git.Credential(None, TOKEN, 'bearer'), environ=clean_environ(tmp_path))
    rc, dummy, err = runner.run(['ls-remote', one.base + '/scm/ops/deploy.git'], str(repo), network=True, check=False,
                                origin=one.base)
    assert rc != 0 and TOKEN not in err
    assert one.requests, 'git never reached the server'
    for request in one.requests:
        assert request['authorization'] == ['Bearer ' + TOKEN]
        assert not [line for line in request['cmdlines'] if TOKEN in line]
        assert any('ls-remote' in line for line in request['cmdlines']), 'git was not running while the server answered'
    # Another origin (say, where a redirect or a second remote points) gets neither this run's token nor the included one.
    runner.run(['ls-remote', other.base + '/scm/ops/deploy.git'], str(repo), network=True, check=False, origin=one.base)
    assert other.requests
    assert all('Bearer' not in header for r in other.requests for header in r['authorization'])


@pytest.mark.parametrize('where', ['local', 'global'])
def test_a_stale_header_keyed_to_the_repository_url_does_not_win(servers, tmp_path, where):
    """git takes only the most specific http.<url>.extraHeader entries: ours are keyed to the repository's URL."""
    one = servers[0]
    repo = tmp_path / 'repo'
    subprocess.run(['git', 'init', '-q', str(repo)], check=True)
    environ = clean_environ(tmp_path)
    remote = one.base + '/scm/ops/deploy.git'
    place = ['--global'] if where == 'global' else ['--local']
    for key in ('http.%s.extraHeader' % remote, 'http.%s/.extraHeader' % remote):
        subprocess.run(['git', 'config'] + place + ['--add', key, 'Authorization: Bearer stale-token-0123'], cwd=str(repo),
                       env=environ, check=True)
    runner = _git.GitRunner(_git.Credential(None, TOKEN, 'bearer'), environ=environ)
    rc, dummy, dummy = runner.run(['ls-remote', remote], str(repo), network=True, check=False, origin=one.base, url=remote)
    assert rc != 0 and one.requests
    assert [r['authorization'] for r in one.requests] == [['Bearer ' + TOKEN]] * len(one.requests)


def test_a_cloud_run_keeps_the_users_own_headers_and_drops_a_stored_bearer(servers, tmp_path):
    one = servers[0]
    repo = tmp_path / 'repo'
    subprocess.run(['git', 'init', '-q', str(repo)], check=True)
    environ = clean_environ(tmp_path)
    subprocess.run(['git', 'config', '--global', 'http.extraHeader', 'Authorization: Basic dXNlcjpvd24='], env=environ, check=True)
    remote = one.base + '/acme/api.git'
    runner = _git.GitRunner(_git.Credential(_git.TOKEN_USERNAME, TOKEN, 'token'), environ=environ)

    def headers():
        del one.requests[:]
        runner.run(['ls-remote', remote], str(repo), network=True, check=False, origin=one.base, url=remote)
        assert one.requests
        return sorted(set(header for r in one.requests for header in r['authorization']))

    # Cloud, as before Data Center support: the user's unscoped header goes out.
    assert headers() == ['Basic dXNlcjpvd24=']
    # A checkout an earlier Bearer run left its AUTH_FILE in: neither that older token nor any other header goes out.
    (repo / '.git' / _git.AUTH_FILE).write_text(_git.Credential(None, 'older-token-0123', 'bearer').auth_config(one.base))
    subprocess.run(['git', 'config', 'include.path', _git.AUTH_FILE], cwd=str(repo), env=environ, check=True)
    assert headers() == []


def test_the_auth_file_is_what_git_reads_for_that_origin_only(tmp_path):
    path = tmp_path / 'auth.config'
    for secret in (TOKEN, ODD):
        path.write_text(_git.Credential(None, secret, 'bearer').auth_config('https://bitbucket.example:8443'))

        def urlmatch(url):
            return subprocess.run(['git', 'config', '--file', str(path), '--get-urlmatch', 'http.extraheader', url],
                                  capture_output=True, text=True, check=False).stdout

        assert urlmatch('https://bitbucket.example:8443/scm/ops/deploy.git') == 'Authorization: Bearer %s\n' % secret
        assert urlmatch('https://bitbucket.example/scm/ops/deploy.git') == ''
        assert urlmatch('https://elsewhere.example:8443/scm/ops/deploy.git') == ''


# ---------------------------------------------------------------- url mode refused, archive URLs


def test_url_mode_with_a_bearer_token_fails_before_any_work(tmp_path):
    dest = tmp_path / 'never'
    params = {'repositories': [{'url': 'https://bitbucket.example/scm/ops/deploy.git', 'dest': str(dest), 'ref': 'main'}],
              'access_token': TOKEN, 'flavor': 'datacenter', 'credential_mode': 'url', 'method': 'git'}
    with pytest.raises(ValidationError) as info:
        _git.checkout_repositories(params, environ=clean_environ(tmp_path))
    message = str(info.value)
    assert 'git cannot carry a Bearer token in a URL' in message
    assert 'credential_mode=store or ephemeral' in message and 'username and password' in message
    assert TOKEN not in message and not dest.exists()


@pytest.mark.parametrize('url, expected', [
    ('https://bb.example/scm/ops/deploy.git', 'https://bb.example/rest/api/latest/projects/OPS/repos/deploy/archive'),
    ('https://bb.example:8443/bitbucket/scm/ops/deploy.git',
     'https://bb.example:8443/bitbucket/rest/api/latest/projects/OPS/repos/deploy/archive'),
    ('https://bb.example/a/b/scm/Ops/my.repo', 'https://bb.example/a/b/rest/api/latest/projects/OPS/repos/my.repo/archive'),
    ('https://bb.example/scm/ops/deploy.git/', 'https://bb.example/rest/api/latest/projects/OPS/repos/deploy/archive'),
    ('https://bb.example/scm/~alice/notes.git', 'https://bb.example/rest/api/latest/users/alice/repos/notes/archive'),
])
def test_the_data_center_archive_url_comes_from_the_clone_url(url, expected):
    commit = 'a' * 40
    assert _git.datacenter_archive_url(url, commit) == expected + '?at=%s&format=tar.gz' % commit


@pytest.mark.parametrize('url', [
    'https://bitbucket.org/acme/api.git', 'https://bb.example/scm/deploy.git', 'https://bb.example/scm/ops/x/deploy.git',
    'https://bb.example/projects/OPS/repos/deploy', 'https://bb.example/scm/~/deploy.git', 'https://bb.example/scm/ops/.git',
])
def test_a_url_that_is_not_a_data_center_clone_url_fails_clearly(url):
    with pytest.raises(_git.CheckoutError, match='is not a Bitbucket Data Center clone URL'):
        _git.datacenter_archive_url(url, 'a' * 40)


def test_the_archive_checkout_uses_the_flavor():
    spec = _git.RepoSpec({'url': 'https://bb.example/ctx/scm/ops/deploy.git', 'dest': '/tmp/x', 'commit': 'b' * 40})
    options = {'uid': -1, 'gid': -1, 'check_mode': False, 'flavor': 'datacenter'}
    assert _git.ArchiveCheckout(spec, options, None, None).archive_url() == (
        'https://bb.example/ctx/rest/api/latest/projects/OPS/repos/deploy/archive?at=%s&format=tar.gz' % ('b' * 40))
    options['flavor'] = 'cloud'
    assert _git.ArchiveCheckout(spec, options, None, None).archive_url() == (
        'https://bb.example/ctx/scm/ops/deploy/get/%s.tar.gz' % ('b' * 40))


def test_flavor_is_in_the_shared_argument_spec():
    assert _git.ARGUMENT_SPEC['flavor'] == {'type': 'str', 'default': 'cloud', 'choices': ['cloud', 'datacenter']}


# ---------------------------------------------------------------- the failure message


REFUSED = "remote: Unauthorized\nfatal: Authentication failed for 'https://bb.example/scm/ops/deploy.git/'\n"


@pytest.mark.parametrize('url, params, hinted', [
    ('https://bb.example/scm/ops/deploy.git', {'access_token': TOKEN}, True),
    ('https://bb.example/ctx/scm/ops/deploy.git', {'access_token': TOKEN, 'flavor': 'cloud'}, True),
    ('https://bb.example/scm/ops/deploy.git', {'access_token': TOKEN, 'flavor': 'datacenter'}, False),
    ('https://bb.example/scm/ops/deploy.git', {'username': 'alice', 'password': 'dc-personal'}, False),
    ('https://bitbucket.org/acme/api.git', {'access_token': TOKEN}, False),
])
def test_a_refused_cloud_token_on_a_data_center_url_says_to_set_the_flavor(url, params, hinted):
    spec = _git.RepoSpec({'url': url, 'dest': '/tmp/x', 'ref': 'main'})
    options = {'uid': -1, 'gid': -1, 'check_mode': False, 'flavor': params.get('flavor', 'cloud')}
    checkout = _git.GitCheckout(spec, options, _git.GitRunner(_git.Credential.from_params(params)))
    message = str(checkout._fetch_error(REFUSED))
    assert 'refused the credentials' in message
    hint = "the URL looks like Bitbucket Data Center's (/scm/): set flavor: datacenter"
    assert (hint in message) is hinted
    # Only an authentication failure gets it.
    assert hint not in str(checkout._fetch_error("fatal: unable to access '%s': Could not resolve host: bb.example\n" % url))
