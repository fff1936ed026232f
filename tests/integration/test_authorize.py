"""The authorization-code bootstrap, end to end: `ansible-playbook codeferry.bitbucket.authorize`.

A real ansible-playbook listens on the consumer's callback port and then prints the authorize URL;
the test plays the browser against the emulator's authorize endpoint (approving as alice), and then
checks that a later run refreshes from the cache without a browser. Hostile cases: the port already
taken, an idle connection on it, and a token endpoint that echoes the code and the secret back.
"""

import base64
import glob
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus, unquote_plus, urlencode

import pytest
import requests
import trustme

URL_PATTERN = re.compile(r'(https://[^\s"]+/site/oauth2/authorize\?[^\s"]+)')


class Reader(threading.Thread):
    """Collects a process's output lines so the test can wait for one without blocking."""

    def __init__(self, stream):
        threading.Thread.__init__(self, daemon=True)
        self.stream = stream
        self.lines = []

    def run(self):
        for line in self.stream:
            self.lines.append(line)

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return match.group(1)
            time.sleep(0.1)
        raise AssertionError('pattern not seen in output:\n' + ''.join(self.lines)[-4000:])


def deliver(url, attempts=100):
    """Play the browser's last step: GET the redirect target once the listener is up."""
    for dummy in range(attempts):
        try:
            return requests.get(url, timeout=10)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError('the callback listener never answered')


def only_cache_file(cache_dir):
    """The one token file in a cache directory (lock files aside)."""
    names = [name for name in os.listdir(cache_dir) if name.endswith('.json')]
    assert len(names) == 1, names
    return names[0]


def start_authorize(playbook, emulator, consumer, cache_dir, timeout=60, tmpdir=None, **overrides):
    extra = {
        'bitbucket_authorize_url': emulator.base_url + '/site/oauth2/authorize',
        'bitbucket_token_url': emulator.token_url,
        'bitbucket_ca_path': emulator.ca_file,
        'bitbucket_token_cache_dir': cache_dir,
        'bitbucket_authorize_timeout': timeout,
        'bitbucket_redirect_uri': consumer['callback_url'],
    }
    extra.update(('bitbucket_' + name, value) for name, value in overrides.items())
    argv = playbook.command('codeferry.bitbucket.authorize', verbosity=4, extra_args=['-e', json.dumps(extra)])
    env = {'BITBUCKET_CLIENT_ID': consumer['key'], 'BITBUCKET_CLIENT_SECRET': consumer['secret']}
    if tmpdir:
        env['TMPDIR'] = tmpdir  # where the playbook makes its private directory
    proc = subprocess.Popen(argv, env=playbook.env(env), cwd=playbook.workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    reader = Reader(proc.stdout)
    reader.start()
    return proc, reader


def finish(proc, reader):
    proc.wait(timeout=120)
    reader.join(timeout=10)
    return proc.returncode, ''.join(reader.lines)


def test_authorize_then_refresh_without_browser(emulator, demo_data, playbook, tmp_path, assert_no_secrets):
    consumer = demo_data['consumers'][0]
    cache_dir = str(tmp_path / 'token-cache')
    emulator.reset()
    # The session's emulator keeps every token it ever issued: this test's are the ones after these.
    issued_before = len(emulator.stats()['tokens'])
    private_parent = tmp_path / 'tmp'
    private_parent.mkdir()
    proc, reader = start_authorize(playbook, emulator, consumer, cache_dir, tmpdir=str(private_parent))
    preconnect = None
    try:
        url = reader.wait_for(URL_PATTERN, timeout=60)
        assert 'response_type=code' in url and 'client_id=' + consumer['key'] in url

        # The URL is shown only once the listener holds the port: it answers at the first attempt.
        # A browser's preconnect opens a socket and sends nothing; it must not hold up the redirect.
        port = int(re.search(r':(\d+)/', consumer['callback_url']).group(1))
        preconnect = socket.create_connection(('127.0.0.1', port), timeout=5)

        # The async job's result (which will hold the code) is in a private directory, not ~/.ansible_async.
        private, = glob.glob(str(private_parent / 'codeferry-authorize-*'))
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
        ready = os.path.join(private, 'listening')
        assert stat.S_IMODE(os.lstat(ready).st_mode) == 0o600
        assert len(os.listdir(private)) == 2, os.listdir(private)  # the ready file and the job's result

        # The browser: the emulator approves as alice and redirects to the consumer's callback.
        approve = requests.get(url, params={'emulator_user': 'alice'}, verify=emulator.ca_file, allow_redirects=False, timeout=10)
        assert approve.status_code == 302
        location = approve.headers['Location']
        assert location.startswith(consumer['callback_url'])
        code = re.search(r'[?&]code=([^&]+)', location).group(1)

        # A forged redirect (wrong state) is refused and the listener keeps waiting for the real one.
        forged = deliver(consumer['callback_url'] + '?code=forged&state=not-the-state')
        assert forged.status_code == 400
        started = time.monotonic()
        page = deliver(location)
        assert page.status_code == 200 and time.monotonic() - started < 3
        assert 'Access granted' in page.text
    finally:
        rc, output = finish(proc, reader)
        if preconnect:
            preconnect.close()
    assert rc == 0, output[-4000:]
    assert os.listdir(str(private_parent)) == []  # the private directory is gone with the code in it
    assert 'Authorized. Scopes: repository, account' in output
    assert 'The refresh token is in the token cache' in output

    issued = emulator.stats()['tokens'][issued_before:]
    assert len(issued) == 2  # one access token, one refresh token
    assert_no_secrets(output, issued + [code, consumer['secret']])

    files = os.listdir(cache_dir)
    assert files, 'the token cache is empty'
    for name in files:
        assert_no_secrets(name, issued + [consumer['secret'], consumer['key']])
    cache_file = os.path.join(cache_dir, only_cache_file(cache_dir))
    with open(cache_file, encoding='utf-8') as handle:
        cached = json.load(handle)
    assert cached['refresh_token'] in issued and cached['access_token'] in issued
    assert consumer['secret'] not in json.dumps(cached)

    # A later run: no browser, no code. It asks for the user's token (the refresh_token grant, which
    # finds the refresh token in the cache); min_ttl above the token's lifetime forces a renewal,
    # which must use the cached refresh token, so the new token still acts for alice (the approving user).
    emulator.reset()
    run = playbook.run("""
        - name: Token from the cached refresh token
          codeferry.bitbucket.oauth_token:
            grant_type: refresh_token
            client_id: "{{ client_id }}"
            client_secret: "{{ client_secret }}"
            token_url: "{{ token_url }}"
            ca_path: "{{ ca_path }}"
            cache_dir: "{{ cache_dir }}"
            min_ttl: 7200
          register: token
          no_log: true
        """, save=['token'], play_vars={
        'client_id': consumer['key'], 'client_secret': consumer['secret'], 'token_url': emulator.token_url,
        'ca_path': emulator.ca_file, 'cache_dir': cache_dir})
    assert run.rc == 0, run
    token = run.results['token']
    assert token['changed'] is True and token['from_cache'] is False
    assert emulator.stats()['requests']['token'] == 1
    # Rotation (current mode): the refresh token changed and the new one is in the cache.
    assert token['refresh_token'] not in issued
    with open(cache_file, encoding='utf-8') as handle:
        assert json.load(handle)['refresh_token'] == token['refresh_token']
    user = requests.get(emulator.api_url + '/user', headers={'Authorization': 'Bearer ' + token['access_token']},
                        verify=emulator.ca_file, timeout=10)
    assert user.status_code == 200 and user.json()['username'] == 'alice'


def test_authorize_times_out_with_a_clear_message(emulator, demo_data, playbook, tmp_path):
    consumer = demo_data['consumers'][0]
    proc, reader = start_authorize(playbook, emulator, consumer, str(tmp_path / 'cache'), timeout=2)
    reader.wait_for(URL_PATTERN, timeout=60)
    rc, output = finish(proc, reader)
    assert rc != 0
    assert 'no authorization redirect reached %s within 2 seconds' % consumer['callback_url'] in output
    assert 'Traceback' not in output


def test_authorize_reports_a_denied_grant(emulator, demo_data, playbook, tmp_path):
    consumer = demo_data['consumers'][0]
    proc, reader = start_authorize(playbook, emulator, consumer, str(tmp_path / 'cache'))
    try:
        url = reader.wait_for(URL_PATTERN, timeout=60)
        state = re.search(r'[?&]state=([^&]+)', url).group(1)
        denied = deliver('%s?error=access_denied&error_description=The+user+denied+access&state=%s' % (consumer['callback_url'], state))
        assert denied.status_code == 400
    finally:
        rc, output = finish(proc, reader)
    assert rc != 0
    assert 'authorization failed: access_denied: The user denied access' in output
    assert 'Traceback' not in output


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def held_port(family, host):
    """A socket listening on host at a free port, as another local user's process would."""
    sock = socket.socket(family)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        pytest.skip('this machine has no %s loopback address' % host)
    sock.listen(1)
    return sock


@pytest.mark.parametrize('taken', ['ipv4', 'ipv6-for-localhost'])
def test_a_taken_port_fails_the_play_before_the_url_is_shown(emulator, demo_data, playbook, tmp_path, taken):
    if taken == 'ipv4':
        holder = held_port(socket.AF_INET, '127.0.0.1')
        uri = 'http://127.0.0.1:%d/' % holder.getsockname()[1]
        expected = 'cannot listen on 127.0.0.1 port %d' % holder.getsockname()[1]
    else:
        # localhost would leave [::1] to whoever holds it while we listened on 127.0.0.1 alone.
        holder = held_port(socket.AF_INET6, '::1')
        uri = 'http://localhost:%d/' % holder.getsockname()[1]
        expected = 'names localhost; use a literal loopback address such as http://127.0.0.1:%d/' % holder.getsockname()[1]
    consumer = dict(demo_data['consumers'][0], callback_url=uri)
    with holder:
        proc, reader = start_authorize(playbook, emulator, consumer, str(tmp_path / 'cache'), tmpdir=str(tmp_path))
        rc, output = finish(proc, reader)
        # Nothing reached the holder: no browser was sent there.
        holder.settimeout(0.5)
        with pytest.raises(socket.timeout):
            holder.accept()
    assert rc != 0
    assert expected in output, output[-4000:]
    assert not URL_PATTERN.search(output) and 'Open this URL' not in output
    assert 'Traceback' not in output
    assert not glob.glob(str(tmp_path / 'codeferry-authorize-*'))


# A token endpoint that echoes the request back in its error: the exchange fails, and the play
# re-prints the no_log task's message in its next task. What it prints must hold no secret.

ECHO_CONSUMER = {'key': 'echoKey0123456789', 'secret': 'echo+Secret/With=Odd&Chars0123456789'}
ECHO_CODE = 'Code+With/Odd=Chars&0123456789abcdef'


class EchoHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # pylint: disable=invalid-name
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0)).decode('latin-1')
        auth = self.headers.get('Authorization', '')
        decoded = base64.b64decode(auth[len('Basic '):]).decode('latin-1') if auth.startswith('Basic ') else ''
        echo = 'you sent %s and %s (%s), that is %s' % (body, auth, decoded, unquote_plus(body))
        self.server.seen.append(echo)
        if self.server.style == 'json':
            payload, ctype = json.dumps({'error': 'invalid_grant', 'error_description': echo}), 'application/json'
        else:
            payload, ctype = echo, 'text/plain'
        data = payload.encode('utf-8')
        self.send_response(400)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass


@pytest.fixture
def echo_server(tmp_path):
    ca = trustme.CA()
    ca_file = str(tmp_path / 'echo-ca.pem')
    ca.cert_pem.write_to_path(ca_file)
    server = ThreadingHTTPServer(('127.0.0.1', 0), EchoHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert('127.0.0.1').configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.style = [], 'json'
    server.token_url = 'https://127.0.0.1:%d/site/oauth2/access_token' % server.server_address[1]
    server.ca_file = ca_file
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('style', ['json', 'text'])
def test_a_failed_exchange_reprints_no_echoed_secret(emulator, echo_server, playbook, tmp_path, assert_no_secrets, style):
    echo_server.style = style
    consumer = dict(ECHO_CONSUMER, callback_url='http://127.0.0.1:%d/cb' % free_port())
    proc, reader = start_authorize(playbook, emulator, consumer, str(tmp_path / 'cache'), token_url=echo_server.token_url,
                                   ca_path=echo_server.ca_file)
    try:
        url = reader.wait_for(URL_PATTERN, timeout=60)
        state = re.search(r'[?&]state=([^&]+)', url).group(1)
        page = deliver(consumer['callback_url'] + '?' + urlencode({'code': ECHO_CODE, 'state': state}))
        assert page.status_code == 200
    finally:
        rc, output = finish(proc, reader)
    assert rc != 0

    # The server did echo every secret, so the test would see a leak.
    basic = base64.b64encode(('%s:%s' % (consumer['key'], consumer['secret'])).encode()).decode()
    forms = [ECHO_CODE, quote(ECHO_CODE, safe=''), quote_plus(ECHO_CODE), consumer['secret'],
             quote(consumer['secret'], safe=''), quote_plus(consumer['secret']), basic]
    echoed, = echo_server.seen
    assert all(form in echoed for form in (ECHO_CODE, quote_plus(ECHO_CODE), consumer['secret'], basic))

    # The failure task re-printed the exchange's message, with the echo in it, redacted.
    failure = re.search(r'TASK \[Stop when the code exchange failed\].*', output, re.S)
    assert failure, output[-4000:]
    assert 'grant_type=authorization_code): HTTP 400' in failure.group(0)
    assert 'you sent' in failure.group(0) and '********' in failure.group(0)
    assert_no_secrets(output, forms)


CONSUMER_TOKEN_TASK = """
    - name: The consumer's own token
      codeferry.bitbucket.oauth_token:
        grant_type: "{{ grant }}"
        client_id: "{{ client_id }}"
        client_secret: "{{ client_secret }}"
        token_url: "{{ token_url }}"
        ca_path: "{{ ca_path }}"
        cache_dir: "{{ cache_dir }}"
      register: token
      no_log: true
    """


def test_authorize_with_a_warm_consumer_cache_exchanges_the_code_and_keeps_both(emulator, demo_data, playbook, tmp_path):
    consumer = demo_data['consumers'][0]
    cache_dir = str(tmp_path / 'token-cache')
    variables = {'client_id': consumer['key'], 'client_secret': consumer['secret'], 'token_url': emulator.token_url,
                 'ca_path': emulator.ca_file, 'cache_dir': cache_dir}
    warm = playbook.run(CONSUMER_TOKEN_TASK, save=['token'], play_vars=dict(variables, grant='client_credentials'))
    assert warm.rc == 0, warm
    consumer_token = warm.results['token']['access_token']

    emulator.reset()
    proc, reader = start_authorize(playbook, emulator, consumer, cache_dir)
    try:
        url = reader.wait_for(URL_PATTERN, timeout=60)
        approve = requests.get(url, params={'emulator_user': 'bob'}, verify=emulator.ca_file, allow_redirects=False,
                               timeout=10)
        assert approve.status_code == 302
        assert deliver(approve.headers['Location']).status_code == 200
    finally:
        rc, output = finish(proc, reader)
    assert rc == 0, output[-4000:]
    assert emulator.stats()['requests']['token'] == 1, 'the code must be exchanged despite the warm cache'
    assert 'The refresh token is in the token cache' in output

    def whose(token):
        return requests.get(emulator.api_url + '/user', headers={'Authorization': 'Bearer ' + token},
                            verify=emulator.ca_file, timeout=10).json()['username']

    again = playbook.run(CONSUMER_TOKEN_TASK, save=['token'], play_vars=dict(variables, grant='client_credentials'))
    assert again.results['token']['from_cache'] is True
    assert again.results['token']['access_token'] == consumer_token and whose(consumer_token) == 'alice'
    user = playbook.run(CONSUMER_TOKEN_TASK, save=['token'], play_vars=dict(variables, grant='refresh_token'))
    assert user.rc == 0, user
    assert whose(user.results['token']['access_token']) == 'bob'
