"""The `bitbucket-emulator serve` command line: ready line, TLS, options, errors and clean shutdown."""

import importlib.resources
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest
import requests

from bitbucket_emulator.testing import Emulator

EMULATOR = os.path.join(os.path.dirname(sys.executable), 'bitbucket-emulator')
READY_KEYS = {'flavor', 'base_url', 'api_url', 'token_url', 'git_url', 'ca_file'}
TRACEBACK_MARKERS = ('Traceback (most recent call last)', '  File "')


def demo_file():
    return str(importlib.resources.files('bitbucket_emulator').joinpath('data/demo.yml'))


def assert_no_traceback(text):
    for marker in TRACEBACK_MARKERS:
        assert marker not in text


class Served:
    """One `bitbucket-emulator serve` process."""

    def __init__(self, tmp_path, *options, data=None):
        self.stderr_path = tmp_path / 'stderr.txt'
        self.state_dir = tmp_path / 'state'
        argv = [EMULATOR, 'serve', '--data', data or demo_file(), '--state-dir', str(self.state_dir)] + list(options)
        with open(self.stderr_path, 'wb') as stderr:
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)

    def ready_line(self, timeout=60):
        ready = select.select([self.process.stdout], [], [], timeout)[0]
        assert ready, 'no ready line within %ss' % timeout
        return self.process.stdout.readline()

    def stderr(self):
        return self.stderr_path.read_text(errors='replace')

    def terminate(self, timeout=10):
        self.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rest = self.process.communicate(timeout=timeout)[0]
        return self.process.returncode, rest, time.monotonic() - started

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(*options, data=None):
        served = Served(tmp_path, *options, data=data)
        started.append(served)
        return served
    yield start
    for served in started:
        served.kill()


def test_ready_line_and_clean_exit(serve):
    served = serve('--port', '0')
    line = served.ready_line()
    assert line.endswith('\n')
    info = json.loads(line)
    assert set(info) == READY_KEYS
    assert info['flavor'] == 'cloud'
    base = urllib.parse.urlsplit(info['base_url'])
    assert base.scheme == 'https'
    assert base.hostname == '127.0.0.1'
    assert base.port and base.port != 0
    assert info['api_url'].rstrip('/').endswith('/2.0')
    assert urllib.parse.urlsplit(info['api_url']).port == base.port
    assert info['token_url'].endswith('/site/oauth2/access_token')
    assert info['git_url'].startswith('https://')
    assert os.path.isfile(info['ca_file'])

    response = requests.get(info['api_url'].rstrip('/') + '/repositories/acme/docs', verify=info['ca_file'], timeout=30)
    assert response.status_code == 200
    assert response.json()['full_name'] == 'acme/docs'

    code, rest, elapsed = served.terminate()
    assert code == 0
    assert elapsed < 5
    assert rest == ''
    assert_no_traceback(served.stderr())


def test_explicit_port_and_host(serve):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    served = serve('--host', '127.0.0.1', '--port', str(port))
    info = json.loads(served.ready_line())
    assert urllib.parse.urlsplit(info['base_url']).port == port
    assert requests.get(info['base_url'] + '/2.0/repositories/acme/docs', verify=info['ca_file'], timeout=30).status_code == 200
    assert served.terminate()[0] == 0


def test_mode_and_latency_options(serve):
    served = serve('--port', '0', '--mode', 'legacy', '--latency-ms', '400')
    info = json.loads(served.ready_line())
    started = time.monotonic()
    response = requests.post(info['token_url'], data={'grant_type': 'client_credentials'},
                             auth=('demoKey1234567890ab', 'demoSecret+With/Odd=Chars0123456789'), verify=info['ca_file'], timeout=30)
    assert time.monotonic() - started >= 0.4
    assert response.status_code == 200
    body = response.json()
    assert 'scopes' in body and 'scope' not in body
    assert body['refresh_token']
    assert served.terminate()[0] == 0


def test_default_mode_is_current(serve):
    served = serve('--port', '0')
    info = json.loads(served.ready_line())
    response = requests.post(info['token_url'], data={'grant_type': 'client_credentials'},
                             auth=('demoKey1234567890ab', 'demoSecret+With/Odd=Chars0123456789'), verify=info['ca_file'], timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert 'scope' in body and 'scopes' not in body and 'refresh_token' not in body
    assert served.terminate()[0] == 0


@pytest.mark.parametrize('hostname', ['127.0.0.1', 'localhost'])
def test_certificate_covers_hostname(emulator, hostname):
    port = urllib.parse.urlsplit(emulator.base_url).port
    context = ssl.create_default_context(cafile=emulator.ca_file)
    assert context.check_hostname
    with socket.create_connection(('127.0.0.1', port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            assert tls.getpeercert()
    url = 'https://%s:%d/2.0/repositories/acme/docs' % (hostname, port)
    assert requests.get(url, verify=emulator.ca_file, timeout=30).status_code == 200


@pytest.mark.parametrize('hostname', ['127.0.0.1', 'localhost'])
def test_curl_trusts_the_ca_for_hostname(emulator, hostname):
    port = urllib.parse.urlsplit(emulator.base_url).port
    url = 'https://%s:%d/2.0/repositories/acme/docs' % (hostname, port)
    result = subprocess.run(['curl', '-sS', '--cacert', emulator.ca_file, '-o', '/dev/null', '-w', '%{http_code}', url],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == '200'


def test_certificate_is_not_publicly_trusted(emulator):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emulator.api_url.rstrip('/') + '/repositories/acme/docs', verify=True, timeout=30)


def run_to_exit(argv, timeout=20):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def assert_one_line_error(result):
    assert result.returncode == 2
    assert result.stdout == ''
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert_no_traceback(result.stderr)


def test_missing_data_file(tmp_path):
    missing = tmp_path / 'nope.yml'
    result = run_to_exit([EMULATOR, 'serve', '--data', str(missing), '--state-dir', str(tmp_path / 'state'), '--port', '0'])
    assert_one_line_error(result)
    assert 'nope.yml' in result.stderr


@pytest.mark.parametrize('content', [
    'users: [unclosed\n',
    '{"users": \n  - broken: [',
    '42\n',
    '- just\n- a list\n',
    'users: 7\nworkspaces: nope\n',
    'workspaces:\n  - name: no slug here\n    repositories: 12\n',
], ids=['yaml-syntax', 'flow-syntax', 'scalar', 'list', 'wrong-types', 'wrong-nested-types'])
def test_invalid_data_file(tmp_path, content):
    data = tmp_path / 'bad.yml'
    data.write_text(content)
    result = run_to_exit([EMULATOR, 'serve', '--data', str(data), '--state-dir', str(tmp_path / 'state'), '--port', '0'])
    assert_one_line_error(result)


def test_data_file_is_a_directory(tmp_path):
    result = run_to_exit([EMULATOR, 'serve', '--data', str(tmp_path), '--state-dir', str(tmp_path / 'state'), '--port', '0'])
    assert_one_line_error(result)


def test_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_to_exit([EMULATOR, 'serve', '--data', demo_file(), '--state-dir', str(tmp_path / 'state'), '--port', str(port)])
    assert result.returncode != 0
    assert result.stdout == ''
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert_no_traceback(result.stderr)


def test_unusable_state_dir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('not a directory')
    result = run_to_exit([EMULATOR, 'serve', '--data', demo_file(), '--state-dir', str(blocker / 'state'), '--port', '0'])
    assert result.returncode != 0
    assert result.stdout == ''
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert_no_traceback(result.stderr)


def test_bad_mode_is_a_usage_error(tmp_path):
    result = run_to_exit([EMULATOR, 'serve', '--data', demo_file(), '--state-dir', str(tmp_path / 'state'), '--mode', 'nonsense'])
    assert result.returncode == 2
    assert result.stdout == ''
    assert_no_traceback(result.stderr)


def test_helper_stop_is_clean(tmp_path):
    emulator = Emulator(state_dir=str(tmp_path / 'state'))
    emulator.start()
    try:
        assert requests.get(emulator.api_url.rstrip('/') + '/repositories/acme/docs', verify=emulator.ca_file, timeout=30).status_code == 200
        started = time.monotonic()
        code = emulator.stop()
        assert code == 0
        assert time.monotonic() - started < 5
    finally:
        if emulator.process is not None:
            emulator.process.kill()


def test_sigterm_with_open_keepalive_connection(serve):
    served = serve('--port', '0')
    info = json.loads(served.ready_line())
    with requests.Session() as session:
        response = session.get(info['api_url'].rstrip('/') + '/repositories/acme/docs', verify=info['ca_file'], timeout=30)
        assert response.status_code == 200
        code, dummy, elapsed = served.terminate()
    assert code == 0
    assert elapsed < 5
    assert_no_traceback(served.stderr())


def test_sigterm_with_half_open_connection(serve):
    served = serve('--port', '0')
    info = json.loads(served.ready_line())
    with socket.create_connection(('127.0.0.1', urllib.parse.urlsplit(info['base_url']).port), timeout=30):
        time.sleep(0.2)
        code, dummy, elapsed = served.terminate()
    assert code == 0
    assert elapsed < 5
    assert_no_traceback(served.stderr())
