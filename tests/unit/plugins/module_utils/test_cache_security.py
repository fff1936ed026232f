# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The token cache on a shared controller: nothing another local user can plant or swap is trusted.

The cases with a second local user run as root and give what that user would own to uid 65534
(nobody) with os.chown, instead of creating and removing a real second account. Swaps that
would race in real life are done at a fixed point through os calls, so they happen every time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import stat

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _oauth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth, request_token
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import CacheError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import RetryPolicy
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import (
    CONSUMER,
    MAX_CACHE_BYTES,
    MAX_EXPIRES_AT,
    Token,
    TokenCache,
    TokenEndpoint,
    forget_rejected_token,
    get_token,
    secret_check,
)

from bitbucket_fakes import CLIENT_ID, SECRET, FakeHttp, FakeTokenServer, NoSleep

TOKEN_URL = 'https://bitbucket.example/site/oauth2/access_token'
NOW = 1795608000.0
OTHER_UID = 65534
# A planted entry that would pass every other check: only the check under test can stop it.
SECRET_CHECK = secret_check(SECRET)
PLANTED = dict(access_token='planted-token', token_type='bearer', expires_at=NOW + 3600, scopes=['repository'],
               refresh_token=None, token_url=TOKEN_URL, client_id=CLIENT_ID, principal=CONSUMER,
               grant_type='client_credentials', secret_check=SECRET_CHECK, version=_oauth.CACHE_FORMAT)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason='giving a file to another uid needs root')


def endpoint(server):
    return TokenEndpoint(FakeHttp(server), TOKEN_URL, CLIENT_ID, SECRET, retry=RetryPolicy(sleep=NoSleep()))


def cache_at(directory, principal=CONSUMER):
    return TokenCache(str(directory), TOKEN_URL, CLIENT_ID, principal)


def private_dir(path, mode=0o700, uid=None):
    os.mkdir(str(path))
    os.chmod(str(path), mode)
    if uid is not None:
        os.chown(str(path), uid, uid)
    return path


def write_file(path, content, mode=0o600, uid=None):
    with open(str(path), 'wb') as handle:
        handle.write(content if isinstance(content, bytes) else content.encode())
    os.chmod(str(path), mode)
    if uid is not None:
        os.chown(str(path), uid, uid)


def planted(**overrides):
    return json.dumps(dict(PLANTED, **overrides))


def snapshot(directory):
    """{name: (mode, uid, bytes or link target)} of a directory, to show it was left alone."""
    result = {}
    for name in sorted(os.listdir(str(directory))):
        path = os.path.join(str(directory), name)
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            with open(path, 'rb') as handle:
                content = handle.read()
        else:
            content = None
        result[name] = (info.st_mode, info.st_uid, content)
    return result


def mint(directory, server=None):
    """get_token() on a cold or planted cache in directory: (token, warnings, grants)."""
    server = server or FakeTokenServer()
    result = get_token(endpoint(server), cache_at(directory), now=NOW)
    return result.token.access_token, result.warnings, server.grants


def bounded(target, timeout=5.0):
    """target()'s return value, computed in a forked child that may neither hang nor eat memory."""
    context = multiprocessing.get_context('fork')
    receiver, sender = context.Pipe(duplex=False)

    def child():
        with open('/proc/self/statm') as handle:
            in_use = int(handle.read().split()[0]) * resource.getpagesize()
        limit = in_use + 512 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            sender.send(('ok', target()))
        except BaseException as exc:  # pylint: disable=broad-except
            sender.send(('error', '%s: %s' % (type(exc).__name__, exc)))

    process = context.Process(target=child, daemon=True)
    process.start()
    try:
        if not receiver.poll(timeout):
            pytest.fail('still running after %s seconds' % timeout)
        kind, value = receiver.recv()
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)
    if kind == 'error':
        pytest.fail(value)
    return value


# --- item 2: the path to the cache ------------------------------------------------------------


def test_a_symlinked_cache_dir_is_refused_and_its_target_left_alone(tmp_path):
    # Another user's link to a directory of ours (root's /etc, say) must not get it chmod-ed or written.
    target = private_dir(tmp_path / 'etc', 0o755)
    write_file(target / 'passwd', 'root:x:0:0\n', 0o644)
    before = snapshot(target)
    link = tmp_path / 'tokens'
    os.symlink(str(target), str(link))
    server = FakeTokenServer()
    with pytest.raises(CacheError, match='symbolic link') as info:
        mint(link, server)
    assert str(link) in str(info.value)
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o755 and snapshot(target) == before
    assert server.grants == []


def test_a_symlink_in_a_parent_is_refused(tmp_path):
    real = private_dir(tmp_path / 'real')
    os.symlink(str(real), str(tmp_path / 'link'))
    with pytest.raises(CacheError, match='symbolic link') as info:
        mint(tmp_path / 'link' / 'cache' / 'tokens')
    assert str(tmp_path / 'link') in str(info.value)
    assert os.listdir(str(real)) == []


@as_root
@pytest.mark.parametrize('existing_leaf', [False, True])
def test_a_parent_of_another_user_is_refused(tmp_path, existing_leaf):
    foreign = private_dir(tmp_path / 'home-of-nobody', 0o755, uid=OTHER_UID)
    if existing_leaf:
        # Even a leaf of ours: its owner can swap it for one of theirs.
        private_dir(foreign / 'tokens')
        write_file(foreign / 'tokens' / cache_at(foreign / 'tokens').name, planted())
    before = snapshot(foreign)
    with pytest.raises(CacheError, match='parent of the token cache directory, belongs to another user \\(uid 65534\\)'):
        mint(foreign / 'tokens')
    assert snapshot(foreign) == before


@pytest.mark.parametrize('mode', [0o777, 0o775, 0o770, 0o757, 0o722])
def test_a_parent_writable_by_others_is_refused(tmp_path, mode):
    shared = private_dir(tmp_path / 'shared', mode)
    with pytest.raises(CacheError, match='parent of the token cache directory, is writable by other users \\(mode %04o\\)'
                       % mode):
        mint(shared / 'tokens')
    assert os.listdir(str(shared)) == [] and stat.S_IMODE(os.stat(str(shared)).st_mode) == mode


def test_a_sticky_parent_of_root_is_accepted_but_never_as_the_cache_dir(tmp_path):
    # Like /tmp: others cannot rename or remove what is ours in it, so it may be a parent.
    sticky = private_dir(tmp_path / 'tmp', 0o1777)
    assert mint(sticky / 'tokens')[0] == 'at-1'
    assert stat.S_IMODE(os.stat(str(sticky / 'tokens')).st_mode) == 0o700
    with pytest.raises(CacheError, match='writable by other users \\(mode 1777\\)'):
        mint(sticky)
    # The sticky bit is what makes it safe: the same directory without it is refused.
    plain = private_dir(tmp_path / 'plain', 0o777)
    with pytest.raises(CacheError, match='writable by other users'):
        mint(plain / 'tokens')


@as_root
def test_a_sticky_parent_of_another_user_is_refused(tmp_path):
    sticky = private_dir(tmp_path / 'tmp', 0o1777, uid=OTHER_UID)
    with pytest.raises(CacheError, match='belongs to another user'):
        mint(sticky / 'tokens')
    assert os.listdir(str(sticky)) == []


@as_root
def test_a_cache_dir_of_another_user_is_refused(tmp_path):
    foreign = private_dir(tmp_path / 'tokens', 0o700, uid=OTHER_UID)
    with pytest.raises(CacheError, match='belongs to another user; set cache_dir'):
        mint(foreign)
    assert os.listdir(str(foreign)) == []


def test_the_root_directory_and_a_missing_directory(tmp_path):
    with pytest.raises(CacheError, match='must not be /'):
        cache_at('/').open_directory()
    missing = cache_at(tmp_path / 'missing' / 'tokens')
    assert missing.open_directory(create=False) is False
    assert not (tmp_path / 'missing').exists()


# --- item 3: files in the cache directory ------------------------------------------------------


def prepared(tmp_path):
    """An empty, checked cache directory and its TokenCache (closed)."""
    cache = cache_at(tmp_path / 'tokens')
    cache.open_directory()
    cache.close()
    return cache


@pytest.mark.parametrize('victim_exists', [False, True])
def test_a_lock_file_symlink_is_not_followed(tmp_path, victim_exists):
    cache = prepared(tmp_path)
    victim = tmp_path / 'chosen-by-the-attacker'
    if victim_exists:
        write_file(victim, 'precious\n', 0o644)
    os.symlink(str(victim), cache.lock_path)
    server = FakeTokenServer()
    with pytest.raises(CacheError, match='token cache lock .* symbolic link'):
        mint(cache.directory, server)
    if victim_exists:
        assert victim.read_text() == 'precious\n' and stat.S_IMODE(os.stat(str(victim)).st_mode) == 0o644
    else:
        assert not os.path.lexists(str(victim))
    assert server.grants == []


def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path):
    cache = prepared(tmp_path)
    os.mkfifo(cache.lock_path, 0o600)

    def attempt():
        try:
            return mint(cache.directory)
        except CacheError as exc:
            return str(exc)
    assert bounded(attempt) == 'the token cache lock %s is not a regular file of yours; remove it' % cache.lock_path


def test_a_cache_file_symlink_is_not_followed(tmp_path):
    cache = prepared(tmp_path)
    elsewhere = tmp_path / 'elsewhere.json'
    write_file(elsewhere, planted())
    before = snapshot(tmp_path)['elsewhere.json']
    os.symlink(str(elsewhere), cache.path)
    token, warnings, grants = mint(cache.directory)
    assert token == 'at-1' and len(grants) == 1
    assert len(warnings) == 1 and 'symbolic link' in warnings[0] and 'replaced' in warnings[0]
    # The link was replaced by a file of ours; its target was neither read nor written.
    assert not os.path.islink(cache.path) and snapshot(tmp_path)['elsewhere.json'] == before


def _plant_fifo(path):
    os.mkfifo(path, 0o600)


def _plant_link_to_dev_zero(path):
    os.symlink('/dev/zero', path)


def _plant_dev_zero(path):
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip('mknod is not permitted here')


@pytest.mark.parametrize('plant, reason', [
    (_plant_fifo, 'not a regular file'),
    (_plant_link_to_dev_zero, 'symbolic link'),
    (_plant_dev_zero, 'not a regular file'),
])
def test_a_fifo_or_device_as_cache_file_neither_hangs_nor_eats_memory(tmp_path, plant, reason):
    cache = prepared(tmp_path)
    plant(cache.path)
    token, warnings, grants = bounded(lambda: mint(cache.directory))
    assert token == 'at-1' and len(grants) == 1
    assert len(warnings) == 1 and reason in warnings[0]


@as_root
def test_a_cache_file_of_another_user_is_ignored(tmp_path):
    cache = prepared(tmp_path)
    write_file(cache.path, planted(), uid=OTHER_UID)
    token, warnings, grants = mint(cache.directory)
    assert token == 'at-1' and len(warnings) == 1 and 'belongs to another user' in warnings[0]


def test_a_cache_file_over_the_size_bound_is_ignored(tmp_path):
    cache = prepared(tmp_path)
    content = planted()
    # At the bound, a (padded) entry is read as usual.
    write_file(cache.path, content + ' ' * (MAX_CACHE_BYTES - len(content)))
    token, warnings, grants = mint(cache.directory)
    assert (token, warnings, grants) == ('planted-token', [], [])
    write_file(cache.path, content + ' ' * (MAX_CACHE_BYTES + 1 - len(content)))
    token, warnings, grants = mint(cache.directory)
    assert token == 'at-1' and len(warnings) == 1 and 'larger than %d bytes' % MAX_CACHE_BYTES in warnings[0]


def swap_for_a_link(directory, attacker):
    """Replace directory by a symbolic link to attacker's directory, which holds a planted entry."""
    os.rename(str(directory), str(directory) + '.orig')
    private_dir(attacker)
    write_file(attacker / cache_at(directory).name, planted())
    os.symlink(str(attacker), str(directory))
    return snapshot(attacker)


def test_a_directory_swapped_after_opening_is_never_used(tmp_path):
    tokens = tmp_path / 'tokens'
    cache = cache_at(tokens)
    cache.open_directory()
    try:
        planted_state = swap_for_a_link(tokens, tmp_path / 'attacker')
        assert cache.read() is None  # not the planted token
        with cache:
            cache.write(Token('at-mine', expires_at=NOW + 7200, token_url=TOKEN_URL, client_id=CLIENT_ID,
                              grant_type='client_credentials', secret_check=SECRET_CHECK))
    finally:
        cache.close()
    assert snapshot(tmp_path / 'attacker') == planted_state
    assert sorted(os.listdir(str(tokens) + '.orig')) == sorted([cache.name, cache.lock_name])
    # The next run checks the path again and refuses the link.
    with pytest.raises(CacheError, match='symbolic link'):
        mint(tokens)


def test_a_swap_between_the_checks_and_the_use_changes_nothing(tmp_path, monkeypatch):
    # The moment the race needs: the checks have passed, nothing has been read or written yet.
    tokens = tmp_path / 'tokens'
    real_open = _oauth.open_private_directory
    swapped = []

    def open_then_swap(path, create=True):
        fd = real_open(path, create)
        if not swapped:
            swapped.append(swap_for_a_link(tokens, tmp_path / 'attacker'))
        return fd
    monkeypatch.setattr(_oauth, 'open_private_directory', open_then_swap)
    token, warnings, grants = mint(tokens)
    assert token == 'at-1' and warnings == [] and len(grants) == 1
    assert snapshot(tmp_path / 'attacker') == swapped[0]
    with open(os.path.join(str(tokens) + '.orig', cache_at(tokens).name)) as handle:
        assert json.load(handle)['access_token'] == 'at-1'


# --- item 6: the same checks for every caller -----------------------------------------------------


@as_root
def test_the_directory_checks_run_whatever_the_caller(tmp_path):
    shared = private_dir(tmp_path / 'shared', 0o777, uid=OTHER_UID)
    write_file(shared / cache_at(shared).name, planted(), uid=OTHER_UID)
    before = snapshot(shared)
    server = FakeTokenServer()
    with pytest.raises(CacheError, match='belongs to another user'):
        mint(shared, server)
    params = dict(token_url=TOKEN_URL, grant_type='client_credentials', refresh_token=None, code=None, redirect_uri=None,
                  cache_entry=None, min_ttl=300, force=False, cache=True, cache_dir=str(shared))
    with pytest.raises(CacheError, match='belongs to another user'):
        request_token(params, FakeHttp(server), {'client_id': CLIENT_ID, 'client_secret': SECRET})
    with pytest.raises(CacheError, match='belongs to another user'):
        forget_rejected_token(str(shared), 'planted-token')
    assert server.grants == [] and snapshot(shared) == before


def run_module(main, args, monkeypatch, capsys):
    """Run a module's main() with args as its task would; returns the JSON it printed."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core before 2.19
        from ansible.module_utils import basic
        from ansible.module_utils.common.text.converters import to_bytes
        monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args})))
        patch_module_args = None
    if patch_module_args is None:
        with pytest.raises(SystemExit):
            main()
    else:
        with patch_module_args(args), pytest.raises(SystemExit):
            main()
    return json.loads(capsys.readouterr().out)


@as_root
def test_check_mode_refuses_a_foreign_cache_dir_too(tmp_path, monkeypatch, capsys):
    # The module in --check once read this directory without checking it, and returned the planted token.
    from ansible_collections.codeferry.bitbucket.plugins.modules import oauth_token

    shared = private_dir(tmp_path / 'shared', 0o777, uid=OTHER_UID)
    write_file(shared / cache_at(shared).name, planted(), uid=OTHER_UID)
    before = snapshot(shared)
    # Port 9 on loopback: nothing may be sent anyway, the directory is refused first.
    result = run_module(oauth_token.main, {'client_id': CLIENT_ID, 'client_secret': SECRET, 'cache_dir': str(shared),
                                           'token_url': 'https://127.0.0.1:9/site/oauth2/access_token',
                                           '_ansible_check_mode': True}, monkeypatch, capsys)
    assert result.get('failed') is True and 'belongs to another user' in result['msg']
    assert 'planted-token' not in json.dumps(result) and SECRET not in json.dumps(result)
    assert snapshot(shared) == before


def test_a_bad_cache_dir_does_not_hide_the_401_of_an_access_token(tmp_path):
    # rejected() runs while a 401 is being reported: a cache it cannot use must not replace that
    # error (in the module front end it would escape as a traceback), it only changes the advice.
    directory = private_dir(tmp_path / 'tokens', 0o755)
    advice = AccessTokenAuth('some-token', str(directory)).rejected()
    assert 'force: true' in advice and 'dropped' not in advice


# --- item 7: whatever the file holds, a warning and a new token --------------------------------


def deep(depth):
    return planted().replace('"scopes": ["repository"]', '"scopes": ' + '[' * depth + ']' * depth)


@pytest.mark.parametrize('content, reason', [
    (deep(20000), 'not valid JSON'),  # RecursionError, well under the size bound
    (planted(expires_at=float('inf')), 'field expires_at'),
    (planted(expires_at=float('-inf')), 'field expires_at'),
    (planted(expires_at=float('nan')), 'field expires_at'),
    (planted(expires_at=1e20), 'field expires_at'),
    (planted(expires_at=MAX_EXPIRES_AT), 'field expires_at'),
    (planted(expires_at=-1), 'field expires_at'),
    (planted(expires_at=True), 'field expires_at'),
    (planted(expires_at='2026-11-25T14:00:00Z'), 'field expires_at'),
    (planted(access_token='planted\ntoken'), 'field access_token'),
    (planted(access_token='planted token'), 'field access_token'),
    (planted(access_token='x' * 4097), 'field access_token'),
    (planted(access_token=7), 'field access_token'),
    (planted(refresh_token='rt\r\nX-Injected: 1'), 'field refresh_token'),
    (planted(refresh_token=''), 'field refresh_token'),
    (planted(token_type='bearer\x1b[2J'), 'field token_type'),
    (planted(scopes=[1]), 'field scopes'),
    (planted(scopes=['x' * 257]), 'field scopes'),
    (planted(grant_type='password'), 'field grant_type'),
    (planted(grant_type=None), 'field grant_type'),
    (planted(secret_check='0123'), 'field secret_check'),
    (planted(secret_check=[SECRET_CHECK['salt'], SECRET_CHECK['hash']]), 'field secret_check'),
    (planted(secret_check={'salt': SECRET_CHECK['salt']}), 'field secret_check'),
    (planted(secret_check={'salt': 'zz' * 16, 'hash': SECRET_CHECK['hash']}), 'field secret_check'),
    (planted(secret_check={'salt': SECRET_CHECK['salt'], 'hash': SECRET_CHECK['hash'].upper()}), 'field secret_check'),
    ('null', 'not a JSON object'),
    ('"planted-token"', 'not a JSON object'),
])
def test_a_corrupt_entry_gives_a_warning_and_a_new_token(tmp_path, content, reason):
    cache = prepared(tmp_path)
    write_file(cache.path, content)
    token, warnings, grants = mint(cache.directory)
    assert token == 'at-1' and len(grants) == 1
    assert len(warnings) == 1 and reason in warnings[0] and 'replaced' in warnings[0]
    cache.open_directory()
    try:
        assert cache.read(warn=False).access_token == 'at-1'
    finally:
        cache.close()


def test_a_valid_planted_entry_passes_every_check(tmp_path):
    # The control for the cases above: each differs from this entry in one field only.
    cache = prepared(tmp_path)
    write_file(cache.path, planted())
    assert mint(cache.directory) == ('planted-token', [], [])


# --- item 10: what is created is private whatever the umask ------------------------------------


def test_missing_parents_and_the_leaf_are_created_private_whatever_the_umask(tmp_path):
    parent_mode = stat.S_IMODE(os.stat(str(tmp_path)).st_mode)
    directory = tmp_path / 'home' / '.cache' / 'codeferry.bitbucket' / 'tokens'
    old = os.umask(0)
    try:
        assert mint(directory)[0] == 'at-1'
    finally:
        os.umask(old)
    for path in (tmp_path / 'home', tmp_path / 'home' / '.cache', directory.parent, directory):
        assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o700, path
    cache = cache_at(directory)
    for path in (cache.path, cache.lock_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(str(tmp_path)).st_mode) == parent_mode  # what existed is left alone


def test_a_nul_character_in_the_cache_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CacheError, match='contains a NUL character; set cache_dir'):
        cache_at(str(tmp_path) + '/to\0kens').open_directory()
    assert os.listdir(str(tmp_path)) == []
