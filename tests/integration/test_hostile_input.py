"""Hostile servers and careless users, through real ansible-playbook runs at -vvvv.

Each test checks the whole output (invocation, warnings, messages, tracebacks) for secrets in
every encoding a server could echo, and that a failure is one clear message, not a traceback.
"""

import base64
import os
import stat

from urllib.parse import quote, quote_plus

import pytest

from ansible.release import __version__ as ansible_core_version

CONSUMER = {'key': 'demoKey1234567890ab', 'secret': 'demoSecret+With/Odd=Chars0123456789'}
BASIC = base64.b64encode(('%s:%s' % (CONSUMER['key'], CONSUMER['secret'])).encode()).decode()
SECRET_FORMS = [CONSUMER['secret'], quote(CONSUMER['secret'], safe=''), quote_plus(CONSUMER['secret']), BASIC]


def play_vars(emulator, tmp_path, **extra):
    data = {'client_id': CONSUMER['key'], 'client_secret': CONSUMER['secret'], 'token_url': emulator.token_url,
            'api_url': emulator.api_url, 'ca_path': emulator.ca_file, 'cache_dir': str(tmp_path / 'cache')}
    data.update(extra)
    return data


def module_task(module, **options):
    args = {'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'token_url': '{{ token_url }}',
            'ca_path': '{{ ca_path }}', 'cache_dir': '{{ cache_dir }}'}
    if module != 'oauth_token':
        args['api_url'] = '{{ api_url }}'
    args.update(options)
    # A careless user: no no_log on the task, so only the collection protects the secrets.
    return {'name': module, 'codeferry.bitbucket.%s' % module: {k: v for k, v in args.items() if v is not None},
            'ignore_errors': True}


ANSIBLE_CORE = tuple(int(part) for part in ansible_core_version.split('.')[:2])

LOOKUP_TASK = {
    'name': 'lookup', 'ignore_errors': True,
    'ansible.builtin.debug': {'msg': "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=client_secret, "
                                     "token_url=token_url, ca_path=ca_path, cache=false) | length }}"},
}


@pytest.fixture
def faults(emulator):
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


def test_token_endpoint_echoing_credentials_or_answering_in_form_encoding(faults, playbook, tmp_path, assert_no_secrets):
    fresh = 'FreshTokenFromAFormEncodedAnswer123'
    form_answer = {'path_prefix': '/site/oauth2', 'status': 200, 'body': 'access_token=%s&token_type=bearer' % fresh,
                   'headers': {'Content-Type': 'application/x-www-form-urlencoded'}}
    echo = {'path_prefix': '/site/oauth2', 'status': 400,
            'body': 'bad request from Basic %s with client_secret=%s' % (BASIC, quote_plus(CONSUMER['secret']))}
    for spec in (form_answer, echo, form_answer, echo):
        faults.fault(**spec)
    tasks = [module_task('oauth_token', cache=False), module_task('oauth_token', cache=False), LOOKUP_TASK, LOOKUP_TASK]
    run = playbook.run(tasks, play_vars=play_vars(faults, tmp_path), verbosity=4)
    assert run.rc == 0, run
    assert run.output.count('HTTP 200: the token response is not JSON (content type ') >= 2
    assert run.output.count('HTTP 400: bad request from Basic ********') >= 2
    if ANSIBLE_CORE >= (2, 19):
        # Older releases print the traceback of every failed lookup at -vvv themselves.
        assert 'Traceback' not in run.output
    assert_no_secrets(run.output, SECRET_FORMS + [fresh])


def test_access_token_with_a_newline_is_refused_without_showing_it(emulator, playbook, tmp_path, assert_no_secrets):
    token = 'ATCTT3xFfGN0acme+workspace/token='
    tasks = [module_task('repository_info', workspace='acme', client_id=None, client_secret=None,
                         access_token='{{ bad_token }}')]
    run = playbook.run(tasks, play_vars=play_vars(emulator, tmp_path, bad_token=token + '\n' + token), verbosity=4)
    assert 'access_token contains whitespace or control characters' in run.output, run
    assert 'Invalid header value' not in run.output and 'Traceback' not in run.output
    assert_no_secrets(run.output, [token, quote(token, safe='')])


@pytest.mark.parametrize('body, message', [
    ('{"values": [1, 2]}', 'the API returned a JSON int where a repository object was expected'),
    ('{"values": [], "next": 5}', 'the response has a next link of type int'),
    ('[1]', 'the response is not a paginated collection'),
])
def test_odd_json_from_the_api_is_one_clear_error(body, message, faults, playbook, tmp_path, assert_no_secrets):
    faults.fault(path_prefix='/2.0/repositories/acme', status=200, body=body)
    run = playbook.run([module_task('repository_info', workspace='acme')], play_vars=play_vars(faults, tmp_path), verbosity=4)
    assert message in run.output, run
    assert 'Traceback' not in run.output and 'unexpected error' not in run.output
    assert_no_secrets(run.output, SECRET_FORMS + faults.stats()['tokens'])


def test_odd_repository_object_in_ref_info(faults, playbook, tmp_path):
    faults.fault(path_prefix='/2.0/repositories/acme/api', status=200, body='{"mainbranch": "main"}')
    run = playbook.run([module_task('ref_info', workspace='acme', repository='api')],
                       play_vars=play_vars(faults, tmp_path), verbosity=4)
    assert run.rc == 0, run
    assert 'Traceback' not in run.output and 'has no attribute' not in run.output


def test_shared_cache_dir_is_refused_and_left_alone(emulator, playbook, tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    run = playbook.run([module_task('oauth_token', cache_dir=str(shared))], play_vars=play_vars(emulator, tmp_path))
    assert 'is writable by other users (mode 1777)' in run.output, run
    assert stat.S_IMODE(os.stat(str(shared)).st_mode) == 0o1777
    assert os.listdir(str(shared)) == []


@pytest.mark.parametrize('options, message', [
    ({'ca_path': '/nonexistent/ca.pem'}, 'ca_path /nonexistent/ca.pem does not exist'),
    ({'ca_path': '/'}, 'ca_path / is a directory'),
    ({'timeout': 10 ** 12}, 'timeout must be a number of seconds above 0 and at most 3600'),
    ({'token_url': 'https://127.0.0.1:0/site/oauth2/access_token'}, 'token_url must not use port 0'),
])
def test_careless_connection_options(options, message, emulator, playbook, tmp_path, assert_no_secrets):
    tasks = [module_task('oauth_token', cache=False, **options), module_task('repository_info', workspace='acme', **options)]
    run = playbook.run(tasks, play_vars=play_vars(emulator, tmp_path), verbosity=4)
    assert run.output.count(message) >= 2, run
    assert 'Traceback' not in run.output and 'unknown error' not in run.output
    assert_no_secrets(run.output, SECRET_FORMS)


def test_a_nul_in_a_path_is_one_clear_message_without_a_traceback(emulator, playbook, tmp_path, assert_no_secrets):
    # A NUL byte in a path makes os functions raise ValueError; the cache refuses such a path first.
    bad_dir = str(tmp_path) + '/a\x00b'
    lookup = dict(LOOKUP_TASK, **{'ansible.builtin.debug': {
        'msg': "{{ lookup('codeferry.bitbucket.oauth_token', client_id=client_id, client_secret=client_secret, "
               "token_url=token_url, ca_path=ca_path, cache_dir=bad_dir) | length }}"}})
    tasks = [module_task('oauth_token', cache_dir='{{ bad_dir }}'), lookup]
    run = playbook.run(tasks, play_vars=play_vars(emulator, tmp_path, bad_dir=bad_dir), verbosity=2)
    assert run.output.count('contains a NUL character; set cache_dir to a real directory') >= 2, run
    assert 'unexpected error' not in run.output
    assert 'Traceback' not in run.output and 'MODULE FAILURE' not in run.output
    assert_no_secrets(run.output, SECRET_FORMS)
