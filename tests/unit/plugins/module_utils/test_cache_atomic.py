# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Token cache writes are atomic: a reader in another process sees the old file or the new one, never part of one.

One process rewrites the cache many times, with files from a few hundred bytes to nearly the
64 KiB the cache accepts (a write that size spans many pages, so a torn file would be visible);
another process reads it in a tight loop through TokenCache.read(). The same checker runs against
a deliberately non-atomic writer and must catch it: that proves the checker can fail.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import Token, TokenCache, secret_check

TOKEN_URL = 'https://bitbucket.example/site/oauth2/access_token'
CLIENT_ID = 'atomicTestClient0123'
WRITES = 300
# File sizes, cycled through: from a few hundred bytes to just under the 64 KiB the cache accepts.
SIZES = (300, 2000, 9000, 30000, 60000)
READER_DEADLINE = 60.0
# Computed once: the hash is deliberately slow.
SECRET_CHECK = secret_check('atomic-test-secret')


def make_cache(directory):
    """Every TokenCache in this file comes from here, so a change to its constructor is one edit."""
    cache = TokenCache(str(directory), TOKEN_URL, CLIENT_ID)
    cache.open_directory()
    return cache


def make_token(serial):
    """Payload number `serial`; the reader rebuilds it from the serial in the access token.

    A token's fields are bounded (4 KiB a credential, 256 characters a scope), so the size comes
    from the number of scopes.
    """
    scopes = ['scope-%04d-%03d-%s' % (serial, number, 'x' * 180) for number in range(SIZES[serial % len(SIZES)] // 200)]
    return Token('atomic-%04d' % serial, expires_at=1795608000.0 + serial, scopes=scopes,
                 refresh_token='refresh-%04d' % serial, token_url=TOKEN_URL, client_id=CLIENT_ID,
                 grant_type='client_credentials', secret_check=SECRET_CHECK)


def content(token):
    # The fields this test sets; the cache may add others of its own (format version, cache entry).
    return (token.access_token, token.refresh_token, token.expires_at, token.scopes, token.grant_type,
            token.secret_check)


def _reader(directory, stop, connection):
    """Read until told to stop; send 'ready', then a report of how many reads were whole or bad."""
    report = {'reads': 0, 'whole': 0, 'bad': 0, 'problems': [], 'seen': set()}
    newest, expected = -1, {}
    cache = make_cache(directory)
    deadline = time.monotonic() + READER_DEADLINE
    connection.send('ready')
    while True:
        # One more read after the writer is done, which must see the last write.
        last = stop.is_set() or time.monotonic() > deadline
        warnings_before = len(cache.warnings)
        token = cache.read()
        report['reads'] += 1
        problem = None
        if token is None and len(cache.warnings) == warnings_before:
            # No file at all: fine until the first write, a defect after it (the file never goes away).
            if newest >= 0:
                problem = 'the cache file was missing after a write'
        elif token is None:
            problem = cache.warnings[-1][:200]
        else:
            serial = int(token.access_token.split('-')[1])
            if serial not in expected:
                expected[serial] = content(make_token(serial))
            if content(token) != expected[serial]:
                problem = 'token %d read back different from what was written' % serial
            elif serial < newest:
                problem = 'token %d read after the newer token %d' % (serial, newest)
            else:
                report['whole'] += 1
                report['seen'].add(serial)
                newest = serial
        if problem is not None:
            report['bad'] += 1
            if len(report['problems']) < 5:
                report['problems'].append(problem)
        if last:
            break
    cache.close()
    connection.send(report)


def _receive(connection):
    # The reader's end closes when it exits, so a reader that dies fails the test at once.
    if not connection.poll(30):
        raise AssertionError('the reader process is stuck')
    try:
        return connection.recv()
    except EOFError:
        raise AssertionError('the reader process died')


def read_while_writing(directory, write):
    """Call write(cache, token) WRITES times while another process reads; return the reader's report."""
    context = multiprocessing.get_context('fork')
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    reader = context.Process(target=_reader, args=(str(directory), stop, sending))
    reader.start()
    sending.close()
    try:
        assert _receive(receiving) == 'ready'
        cache = make_cache(directory)
        for serial in range(1, WRITES + 1):
            write(cache, make_token(serial))
        cache.close()
        stop.set()
        report = _receive(receiving)
    finally:
        stop.set()
        reader.join(timeout=30)
        if reader.is_alive():
            reader.kill()
        receiving.close()
    assert reader.exitcode == 0
    return report


def cache_file(directory, token):
    """The file that holds `token`, found by its content so that the test does not rely on the naming scheme."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                if token.access_token.encode() in handle.read():
                    return path
    raise AssertionError('no file in %s holds the token' % directory)


def test_reader_never_sees_a_partial_cache_file(tmp_path):
    directory = tmp_path / 'tokens'
    report = read_while_writing(directory, lambda cache, token: cache.write(token))
    assert (report['bad'], report['problems']) == (0, [])
    # The reader really ran during the writes: it saw many versions, and the last one.
    assert report['reads'] >= WRITES and len(report['seen']) >= 10 and max(report['seen']) == WRITES, (
        report['reads'], len(report['seen']))


def test_checker_catches_a_write_that_is_not_atomic(tmp_path):
    directory, scratch = tmp_path / 'tokens', tmp_path / 'scratch'
    seed, seed_cache = make_token(0), make_cache(directory)
    seed_cache.write(seed)
    seed_cache.close()
    path = cache_file(directory, seed)
    scratch_cache = make_cache(scratch)

    def write_in_place(cache, token):
        # The bytes the cache itself would write (made in a scratch directory), then truncate the
        # live file and write them in two halves: exactly what the cache must not do.
        scratch_cache.write(token)
        with open(cache_file(scratch, token)) as handle:
            text = handle.read()
        with open(path, 'w') as handle:
            handle.write(text[:len(text) // 2])
            handle.flush()
            time.sleep(0.001)  # keeps the torn state visible on a busy machine
            handle.write(text[len(text) // 2:])

    report = read_while_writing(directory, write_in_place)
    assert report['whole'] > 0, 'the checker rejects even whole files: %r' % report['problems']
    assert report['bad'] > 0, 'the checker missed every torn read in %d reads' % report['reads']
