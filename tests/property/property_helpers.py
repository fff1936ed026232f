# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Generated bad input: the strategies, the in-process module runner and the checks every case passes.

A module runs the way ansible-test unit tests run it: the arguments are patched into
ansible.module_utils.basic, main() is called, and the JSON that exit_json or fail_json printed is
read back from stdout. A SIGALRM bounds every case, so a hang fails the case instead of the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import string

from collections import Counter
from urllib.parse import quote

from hypothesis import strategies as st

# Cases run per test, for the count printed at the end of the session (see conftest.py).
CASES = Counter()

# Seconds one module run may take before it counts as a hang.
HANG_SECONDS = 30

# Passed-in secrets shorter than this are not searched for in output: Ansible masks them anyway,
# and a short value matches ordinary words of a message by chance.
MIN_SECRET_LENGTH = 8

SECRET_OPTIONS = ('access_token', 'client_secret', 'password', 'refresh_token', 'code')

# A credential that a careless user writes into a URL; it must never come back.
URL_SECRET = 'UrlSecretN0tForOutput'

HUGE = 100 * 1024


class Hang(BaseException):
    """Raised by SIGALRM; a BaseException, so no `except Exception` in the code under test swallows it."""


@contextlib.contextmanager
def time_limit(seconds):
    """Fail with Hang if the block runs longer than seconds."""
    def on_alarm(signum, frame):
        raise Hang('no answer within %d seconds' % seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def module_args(args):
    """Expose args to AnsibleModule, as a task would."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core before 2.19
        from unittest import mock

        from ansible.module_utils import basic

        with mock.patch.object(basic, '_ANSIBLE_ARGS', json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode()):
            yield
        return
    with patch_module_args(args):
        yield


class Outcome(object):
    """What one module run printed: the parsed result and the raw streams."""

    def __init__(self, result, stdout, stderr):
        self.result = result
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return '<Outcome %s>' % self.stdout[:3000]


def run_module(main, args, tmp_dir, remote_tmp, seconds=HANG_SECONDS):
    """Run a module's main() in tmp_dir with args; returns its Outcome. stdout must be exactly one JSON object.

    remote_tmp must outlive the process: AnsibleModule removes its directory there at exit.
    """
    args = dict(args, _ansible_remote_tmp=remote_tmp, _ansible_keep_remote_files=False)
    out, err = io.StringIO(), io.StringIO()
    exited = False
    with working_directory(tmp_dir), module_args(args), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            time_limit(seconds):
        try:
            main()
        except SystemExit:
            exited = True
    stdout = out.getvalue()
    assert exited, 'main() returned without exit_json or fail_json: %r' % stdout[:2000]
    result = json.loads(stdout)
    assert isinstance(result, dict), stdout[:2000]
    return Outcome(result, stdout, err.getvalue())


def strings_in(value):
    """Every string in a JSON value, dictionary keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def passed_secrets(args):
    """The secret option values of args long enough to search for.

    A value also given to an option that is not secret (generated cases reuse values) may be shown as that option.
    """
    shown = [text for name, value in args.items() if name not in SECRET_OPTIONS for text in strings_in(value)]
    return [args[name] for name in SECRET_OPTIONS
            if isinstance(args.get(name), str) and len(args[name].strip()) >= MIN_SECRET_LENGTH
            and not any(args[name] in text for text in shown)]


def assert_no_secret(where, texts, secrets):
    """No secret occurs in any of texts."""
    texts = list(texts)
    for secret in secrets:
        for text in texts:
            assert secret not in text, 'a secret (%d characters) appears in %s' % (len(secret), where)


def assert_clean(outcome, secrets, allowed=()):
    """A clean failure (failed, a message, no traceback) or a clean success, and no secret anywhere.

    allowed: top-level result keys whose values may hold a secret (the token oauth_token returns).
    """
    result = outcome.result
    for stream in (outcome.stdout, outcome.stderr):
        assert 'Traceback' not in stream, outcome
        # The catch-all of ModuleRunner and git_checkout: an input nobody foresaw is a defect.
        assert 'unexpected error (please report it)' not in stream, outcome
    assert 'exception' not in result, outcome
    if result.get('failed'):
        assert result['failed'] is True, outcome
        assert isinstance(result.get('msg'), str) and result['msg'].strip(), outcome
    else:
        assert result.get('failed', False) is False, outcome
    shown = {key: value for key, value in result.items() if key not in allowed or result.get('failed')}
    assert_no_secret('the result', strings_in(shown), secrets)
    assert_no_secret('stderr', [outcome.stderr], secrets)


def count(test_name):
    """Count one generated case of test_name."""
    CASES[test_name] += 1


# ---------------------------------------------------------------------------------------------
# Strategies

ODD_CHARACTERS = [
    '\x00', '\x01', '\x07', '\x1b', '\x7f', '\t', '\n', '\r', '\r\n', '\x85', '\u2028', '\u2029',
    '\u202e', '\u202d', '\u200f', '\u200e', '\u2066', '\u200b', '\ufeff', '\ufffd', '\uffff',
    '\ud800', '\udfff', '\udc80', '\U0001f600', '\u0301', '\u00e9', 'e\u0301', '\u0130', '\u212a',
    '\uff0f', '\u2215', '\u3000', '\xa0', '%00', '%0a', '%2F', '%', '"', "'", '`', '\\', '$(id)',
    '{{ 7 * 7 }}', '{', '}', '[', ']', '<', '>', '&', '|', ';', '*', '?', '~', '^', ':', '@', '#',
    '/', '..', '.', ' ', '-', '--', '+',
]

LOWER = string.ascii_lowercase + string.digits + '-'
SLUG = string.ascii_letters + string.digits + '_.-'
HEX = '0123456789abcdef'

# Text with everything JSON can carry: every code point, lone surrogates included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)


def _huge(piece):
    return (piece * (HUGE // max(len(piece), 1) + 1))[:HUGE]


huge_text = st.sampled_from(['a', 'A1-', '\u202e', '\x00', '/..', '\U0001f600', '%2F', 'main/']).map(_huge)

odd_text = st.one_of(
    any_text,
    st.lists(st.sampled_from(ODD_CHARACTERS), min_size=1, max_size=6).map(''.join),
    st.tuples(st.text(LOWER, min_size=1, max_size=12), st.sampled_from(ODD_CHARACTERS),
              st.text(LOWER, max_size=12)).map(''.join),
    huge_text,
    st.sampled_from(['', ' ', '  \t', 'None', 'null', 'true', 'false', '0', '-1', '1e400', 'NaN', '[]', '{}']),
)

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.just(0), st.just(-1))

wrong_types = st.one_of(
    scalars,
    st.lists(st.one_of(scalars, st.text(string.ascii_letters, max_size=5)), max_size=3),
    st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=5), st.one_of(scalars, st.text(max_size=5)),
                    max_size=3),
    st.just([[]]), st.just({'a': {'b': []}}),
)

anything = st.one_of(odd_text, wrong_types)

slug_like = st.one_of(
    st.text(SLUG, min_size=1, max_size=30),
    st.sampled_from(['.', '..', '...', '-', '_', 'a/b', 'acme/api', '../acme', 'acme%2Fapi', '{}', '{not-a-uuid}',
                     '{12345678-1234-1234-1234-123456789abc}', 'ACME', 'acme ', ' acme', 'acme\n', 'ac\x00me',
                     'acme?x=1', 'acme#x', '~alice', '%7Balice%7D']),
    odd_text,
)

ref_like = st.one_of(
    st.sampled_from(['main', 'master', 'develop', 'release/1.x', 'v1.0.0', 'v2.4.0', 'refs/heads/main', 'refs/tags/v1.0.0',
                     'refs/heads/', 'refs/tags/', 'refs/remotes/origin/main', 'HEAD', 'HEAD~1', 'main^', 'a..b', '@',
                     '@{-1}', '-x', '--upload-pack=touch /tmp/x', '/main', 'main/', 'main.', '.main', 'main.lock',
                     'a b', 'a\\b', 'a:b', 'a?b', 'a*b', 'a[b', 'x' * 300, 'refs/heads/refs/heads/main']),
    st.text(SLUG + '/', min_size=1, max_size=40),
    odd_text,
)

hex_like = st.one_of(
    st.text(HEX, min_size=40, max_size=40), st.text(HEX.upper(), min_size=64, max_size=64), st.text(HEX, min_size=1, max_size=39),
    st.text(HEX + 'g', min_size=40, max_size=40), st.just('0' * 40), odd_text,
)


def url_like(hosts, paths=None):
    """URLs whose host is only ever loopback (an open or a closed port) or a name that cannot resolve.

    Nothing generated here can reach a machine other than this one.
    """
    schemes = st.sampled_from(['https', 'https', 'http', 'HTTPS', 'ftp', 'file', 'ssh', 'git+ssh', 'git', ''])
    userinfo = st.sampled_from(['', '', '', 'user@', 'x-token-auth:%s@' % URL_SECRET, ':%s@' % URL_SECRET, '@', 'a@b@'])
    host = st.one_of(st.sampled_from(list(hosts) + ['127.0.0.1:1', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:-1',
                                                    '127.0.0.1:x', '[::1', '[::1]:1', 'no-such-host.invalid',
                                                    '127.0.0.1:1\r\nX-Injected: 1', '', '%31%32%37.0.0.1']),
                     st.tuples(st.just('no-such-host-'), st.text(LOWER, min_size=1, max_size=8),
                               st.just('.invalid')).map(''.join))
    path = paths if paths is not None else st.one_of(st.just(''), st.just('/'), st.just('/2.0'), odd_text.map(lambda text: '/' + text))
    built = st.tuples(schemes, st.sampled_from(['://', '://', ':/', ':', '//']), userinfo, host, path).map(''.join)
    return st.one_of(built, built, odd_text, wrong_types)


_UNKNOWN = st.sampled_from(['bogus', 'api_URL', 'Workspace', '_ansible_bogus'])


def spoil(valid, bad):
    """A strategy of option dicts: valid with some options replaced by bad ones, some dropped, one unknown added.

    valid: {option: value}; bad: {option: strategy}. Every option of valid must have a strategy in bad.
    """
    missing = sorted(set(valid) - set(bad))
    assert not missing, 'no bad values for %s' % ', '.join(missing)
    replaced = st.lists(st.sampled_from(sorted(bad)), max_size=4, unique=True)
    dropped = st.lists(st.sampled_from(sorted(valid)), max_size=2, unique=True)
    # Strategies are built once here: building them inside the draw would validate them on every case.
    unknown = st.one_of(st.just(None), st.just(None), st.just(None), st.tuples(_UNKNOWN, anything))

    @st.composite
    def build(draw):
        args = dict(valid)
        for name in draw(replaced):
            args[name] = draw(bad[name])
        for name in draw(dropped):
            args.pop(name, None)
        extra = draw(unknown)
        if extra is not None:
            args[extra[0]] = extra[1]
        return args

    return build()


# ---------------------------------------------------------------------------------------------
# How many cases

PROFILE = os.environ.get('HYPOTHESIS_PROFILE', 'ci')
_SCALE = {'ci': 1, 'explore': 10}


def examples(number):
    """max_examples for a test: number under the ci profile, ten times as many under explore."""
    return number * _SCALE.get(PROFILE, 1)


# ---------------------------------------------------------------------------------------------
# Paths: every generated path stays inside the case's directory

CASE = '@CASE@'


def _confine(text):
    # No '..' to climb out, and no '$' or '~' that type=path would expand to a real directory.
    return text.replace('..', '__').replace('$', '_').replace('~', '_')


confined_path = st.one_of(
    st.just(CASE + '/dir'),
    odd_text.map(lambda text: CASE + '/' + _confine(text)),
    odd_text.map(_confine),
    st.sampled_from([CASE, CASE + '/', CASE + '//a//', CASE + '/a/./b', '~/x', '~', '', '.', CASE + '/\x00x']),
)

path_like = st.one_of(confined_path, confined_path, wrong_types)

# Files that may only be read.
readable_path = st.one_of(path_like, st.sampled_from(['/dev/null', '/etc/passwd', '/proc/self/status', '/', '/nonexistent/ca.pem']))


_SURROGATE = re.compile('[\ud800-\udfff]')


def place(value, case_dir):
    """value with CASE replaced by case_dir, and each lone surrogate by U+FFFD, in every string.

    Surrogates stop at the module boundary: AnsibleModule itself fails on them (it logs its
    arguments as UTF-8 before any module code runs), so they say nothing about this collection.
    """
    if isinstance(value, str):
        return _SURROGATE.sub('\ufffd', value.replace(CASE, case_dir))
    if isinstance(value, list):
        return [place(item, case_dir) for item in value]
    if isinstance(value, dict):
        return {place(key, case_dir): place(item, case_dir) for key, item in value.items()}
    return value


@contextlib.contextmanager
def working_directory(path):
    """Run the block in path, so that relative paths land there."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def secret_forms(secrets):
    """Each secret as given, percent-encoded and as repr() would quote it."""
    forms = set()
    for secret in secrets:
        forms.update((secret, quote(secret, safe='', errors='surrogatepass'), repr(secret)[1:-1]))
    return sorted(form for form in forms if len(form) >= MIN_SECRET_LENGTH)
