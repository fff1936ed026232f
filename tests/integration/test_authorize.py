"""The authorization-code bootstrap, end to end: `ansible-playbook codeferry.bitbucket.authorize`.

A real ansible-playbook prints the authorize URL and listens on the consumer's callback port; the
test plays the browser against the emulator's authorize endpoint (approving as alice), and then
checks that a later run refreshes from the cache without a browser.
"""

import json
import os
import re
import subprocess
import threading
import time

import requests

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


def start_authorize(playbook, emulator, consumer, cache_dir, timeout=60):
    extra = {
        'bitbucket_authorize_url': emulator.base_url + '/site/oauth2/authorize',
        'bitbucket_token_url': emulator.token_url,
        'bitbucket_ca_path': emulator.ca_file,
        'bitbucket_token_cache_dir': cache_dir,
        'bitbucket_authorize_timeout': timeout,
        'bitbucket_redirect_uri': consumer['callback_url'],
    }
    argv = playbook.command('codeferry.bitbucket.authorize', verbosity=4, extra_args=['-e', json.dumps(extra)])
    env = playbook.env({'BITBUCKET_CLIENT_ID': consumer['key'], 'BITBUCKET_CLIENT_SECRET': consumer['secret']})
    proc = subprocess.Popen(argv, env=env, cwd=playbook.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    proc, reader = start_authorize(playbook, emulator, consumer, cache_dir)
    try:
        url = reader.wait_for(URL_PATTERN, timeout=60)
        assert 'response_type=code' in url and 'client_id=' + consumer['key'] in url

        # The browser: the emulator approves as alice and redirects to the consumer's callback.
        approve = requests.get(url, params={'emulator_user': 'alice'}, verify=emulator.ca_file, allow_redirects=False, timeout=10)
        assert approve.status_code == 302
        location = approve.headers['Location']
        assert location.startswith(consumer['callback_url'])
        code = re.search(r'[?&]code=([^&]+)', location).group(1)

        # A forged redirect (wrong state) is refused and the listener keeps waiting for the real one.
        forged = deliver(consumer['callback_url'] + '?code=forged&state=not-the-state')
        assert forged.status_code == 400
        page = deliver(location)
        assert page.status_code == 200
        assert 'Access granted' in page.text
    finally:
        rc, output = finish(proc, reader)
    assert rc == 0, output[-4000:]
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

    # A later run: no browser, no code. min_ttl above the token's lifetime forces a renewal, which
    # must use the cached refresh token, so the new token still acts for alice (the approving user).
    emulator.reset()
    run = playbook.run("""
        - name: Token from the cached refresh token
          codeferry.bitbucket.oauth_token:
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
