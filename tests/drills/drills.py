# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fault drills: real ansible-playbook runs of the modules, the lookup and the role against a faulted emulator.

Each drill is written once, as a function of a Scene that returns what it saw and raises
AssertionError on a broken expectation. tests/drills/test_drills.py runs every drill as a test;
tests/drills/run.py (make drill) runs them and prints one line each. After every drill the scene
checks what holds for all of them: no traceback and no secret in any output, and every token
cache file still parses.
"""

import base64
import contextlib
import importlib.util
import io
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tarfile
import threading
import time

TESTS = pathlib.Path(__file__).resolve().parent.parent
for _path in (TESTS / 'integration', TESTS / 'emulator'):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# pylint: disable=wrong-import-position
from bitbucket_emulator.testing import Emulator, load_demo_data  # noqa: E402
from demo import collections_path  # noqa: E402
from test_checkout_role import HOSTS, recap, role_vars, run_role, upstream  # noqa: E402
from test_git_checkout import all_secret_forms, checkout_task, mint  # noqa: E402
from test_oauth_token import CONSUMER, play_vars, token_task  # noqa: E402
from test_token_identity import new_code  # noqa: E402
from test_ref_info import ls_remote  # noqa: E402


def _load_playbook_runner():
    # tests/integration/conftest.py by path: importing it as "conftest" would clash with pytest's own.
    spec = importlib.util.spec_from_file_location('codeferry_drills_integration_conftest', TESTS / 'integration' / 'conftest.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PlaybookRunner


PlaybookRunner = _load_playbook_runner()
# One more repository than the demo data, for the disk-full drill's big commit.
BULK = {'slug': 'bulk', 'project': 'OPS', 'private': True, 'description': 'Large files', 'branches': ['main']}
LOCAL_NOTE = 'NOTES.local'


class DrillSkipped(Exception):
    """The drill cannot run on this machine; the message says why."""


class Drill:
    """A named drill: what it injects, what it expects, and the function that does it."""

    def __init__(self, name, injected, expected, func):
        self.name = name
        self.injected = injected
        self.expected = expected
        self.func = func

    def line(self, seen, ok):
        """The line make drill prints."""
        return 'DRILL %s: injected %s; expected %s; seen %s -> %s' % (
            self.name, self.injected, self.expected, seen, 'ok' if ok else 'FAIL')


DRILLS = []


def drill(name, injected, expected):
    """Register a drill function taking a Scene and returning what it saw."""
    def register(func):
        DRILLS.append(Drill(name, injected, expected, func))
        return func
    return register


def emulator_data():
    """The demo data plus the bulk repository."""
    data = load_demo_data()
    data['workspaces'][0]['repositories'].append(dict(BULK))
    return data


class Playbook:
    """The outcome of a role run, shaped like PlaybookRun (rc, output)."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.output = proc.stdout + proc.stderr

    def __repr__(self):
        return '<role run rc=%s>\n%s' % (self.rc, self.output[-6000:])


class Scene:
    """One drill's world: the shared emulator (faults cleared), a fresh directory, a playbook runner.

    Every output goes through play() or role(), so finish() can search all of them.
    """

    def __init__(self, emulator, collections, workdir):
        self.emu = emulator
        self.tmp = pathlib.Path(workdir)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.collections = collections
        self.playbook = PlaybookRunner(collections, str(self.tmp))
        self.outputs = []
        self.cache_dirs = [self.tmp / 'cache']
        self.emu.clear_faults()
        self.emu.latency(0)

    def runner(self, name):
        """Another playbook runner in a directory of its own (for runs in parallel)."""
        workdir = self.tmp / name
        workdir.mkdir(exist_ok=True)
        return PlaybookRunner(self.collections, str(workdir))

    def play(self, tasks, runner=None, **kwargs):
        """playbook.run() whose output finish() searches."""
        run = (runner or self.playbook).run(tasks, **kwargs)
        self.outputs.append(run.output)
        return run

    def role(self, limit=None, serial=None, after=(), **extra):
        """The checkout role on HOSTS (each with its own checkout_root), token cache in tmp/cache."""
        run = Playbook(run_role(self.playbook, self.tmp, role_vars(self.emu, self.tmp, **extra), serial=serial, after=after,
                                limit=limit))
        self.outputs.append(run.output)
        return run

    def vars(self, cache='cache', **extra):
        """play_vars() for token_task() with this scene's cache directory, and a token for checkout_task()."""
        cache_dir = self.tmp / cache
        if cache_dir not in self.cache_dirs:
            self.cache_dirs.append(cache_dir)
        return play_vars(self.emu, cache_dir, **extra)

    def pending(self):
        """The faults not used up yet."""
        return self.emu.control('faults')['faults']

    def stats(self):
        """The emulator's request counters."""
        return self.emu.stats()['requests']

    def finish(self):
        """What every drill must leave true; returns the seen-text for it."""
        self.emu.clear_faults()
        forms = all_secret_forms(self.emu) | {CONSUMER['secret'], base64.b64encode(
            ('%s:%s' % (CONSUMER['key'], CONSUMER['secret'])).encode()).decode()}
        for index, output in enumerate(self.outputs):
            assert 'Traceback' not in output, 'a traceback in the output of run %d:\n%s' % (index + 1, output[-4000:])
            leaked = sum(1 for form in forms if form in output)
            assert not leaked, '%d secret form(s) leaked into the output of run %d' % (leaked, index + 1)
        files = 0
        for cache_dir in self.cache_dirs:
            for path in cache_dir.glob('*.json') if cache_dir.is_dir() else ():
                assert not path.is_symlink(), '%s is a symbolic link' % path
                with open(path, encoding='utf-8') as handle:
                    entry = json.load(handle)
                assert isinstance(entry.get('access_token'), str) and entry['access_token'], '%s has no access token' % path
                files += 1
        return '%d runs without traceback or secret, %d cache file(s) parse' % (len(self.outputs), files)


def run_drill(item, emulator, collections, workdir):
    """Run one drill in a fresh scene: (seen, ok, details); details is the whole failure. DrillSkipped propagates."""
    scene = Scene(emulator, collections, workdir)
    try:
        seen = item.func(scene)
        return '%s; %s' % (seen, scene.finish()), True, ''
    except AssertionError as exc:
        details = str(exc).strip() or '(no message)'
        return 'FAILED: %s' % details.splitlines()[0][:600], False, details
    finally:
        emulator.clear_faults()
        emulator.latency(0)


@contextlib.contextmanager
def drill_world(workdir):
    """(emulator, collections path) for a set of drills; the emulator is stopped afterwards."""
    with Emulator(data=emulator_data()) as emulator:
        yield emulator, collections_path(str(workdir))


# ---------------------------------------------------------------- helpers

def expect(condition, message):
    """assert, usable in expressions."""
    assert condition, message
    return condition


def plain_role_success(scene, run, hosts=HOSTS):
    """The role ran on hosts, each checkout at its repository's upstream main branch."""
    expect(run.rc == 0, 'the role failed: %r' % run)
    found = dict(heads_of(scene, hosts))
    expect(sorted(found) == sorted((host, slug) for host in hosts for slug in ('api', 'web')), 'checkouts: %s' % sorted(found))
    for (host, slug), commit in found.items():
        expect(commit == upstream(scene.emu, slug), '%s/%s is not at the upstream commit' % (host, slug))
    return len(found)


def heads_of(scene, hosts):
    """(host, slug) -> HEAD of the role's checkouts on hosts."""
    result = {}
    for host in hosts:
        root = scene.tmp / 'hosts' / host
        for name in sorted(os.listdir(root)) if root.is_dir() else ():
            result[(host, name)] = git(root / name, 'rev-parse', 'HEAD')
    return result


def lookup_task(fact='looked_up', ca_path=True):
    """A set_fact task that puts the oauth_token lookup's token (vars from Scene.vars()) into fact."""
    options = 'client_id=client_id, client_secret=client_secret, token_url=token_url, cache_dir=cache_dir'
    if ca_path:
        options += ', ca_path=ca_path'
    return {'name': 'Lookup into ' + fact, 'ansible.builtin.set_fact': {
        fact: "{{ lookup('codeferry.bitbucket.oauth_token', %s) }}" % options}, 'no_log': True}


def add_local_note(dest):
    """Uncommitted local work that never blocks an update: an untracked file."""
    path = pathlib.Path(dest) / LOCAL_NOTE
    path.write_text('work in progress on %s\n' % dest)
    return path


def git(cwd, *args):
    """git's stdout, stripped."""
    return subprocess.run(['git', '-C', str(cwd)] + list(args), check=True, capture_output=True, text=True).stdout.strip()


def repo(scene, slug, dest, **extra):
    """A git_checkout entry for acme/<slug>."""
    entry = {'url': '%s/acme/%s.git' % (scene.emu.git_url, slug), 'dest': str(dest)}
    entry.update(extra)
    return entry


def co_vars(scene):
    """Variables for checkout_task(): a fresh token and the emulator's CA."""
    return {'token': mint(scene.emu), 'ca_path': scene.emu.ca_file}


def failures(result):
    """dest -> message of each failed repository of a git_checkout result."""
    return {entry['dest']: entry.get('msg', '') for entry in result.get('repositories', []) if entry.get('failed')}


def leftovers(parent, keep):
    """Entries of parent other than keep (temporary clones or archives left behind)."""
    return sorted(set(os.listdir(parent)) - set(keep)) if os.path.isdir(parent) else []


# ---------------------------------------------------------------- the drills

@drill('rate-limit-burst', '429 x3 on the token endpoint and 429 x3 on /2.0/repositories (3 backoff steps each)',
       'the role succeeds after retries, one token minted')
def rate_limit_burst(scene):
    """Bursts of 429 longer than one backoff step on both endpoints, in a cold role run."""
    scene.emu.fault(path_prefix='/site/oauth2/access_token', status=429, count=3)
    scene.emu.fault(path_prefix='/2.0/repositories', status=429, count=3)
    scene.emu.reset()
    started = time.monotonic()
    run = scene.role(limit='web1')
    elapsed = time.monotonic() - started
    count = plain_role_success(scene, run, hosts=('web1',))
    stats = scene.stats()
    expect(stats['token'] == 4, 'token requests: %d, expected 3 refused + 1' % stats['token'])
    expect(scene.pending() == [], 'not every 429 was used: %s' % scene.pending())
    return 'rc=0, %d checkouts at upstream, %d token requests (3 refused), %d API requests, %.1f s' % (
        count, stats['token'], stats['api'], elapsed)


@drill('server-errors', '502 and 503 on the token endpoint and the API in a role run; then 500 on each',
       '502/503 retried, the role succeeds; a 500 fails that task at once with its status, the next task works')
def server_errors(scene):
    """Bitbucket's 5xx: the transient ones are retried, a 500 is reported as it is."""
    for status in (502, 503):
        scene.emu.fault(path_prefix='/site/oauth2/access_token', status=status)
        scene.emu.fault(path_prefix='/2.0/repositories', status=status)
    scene.emu.reset()
    run = scene.role(limit='web1')
    count = plain_role_success(scene, run, hosts=('web1',))
    retried = scene.stats()
    expect(retried['token'] == 3, 'token requests: %d, expected 2 refused + 1' % retried['token'])
    expect(scene.pending() == [], 'not every fault was used: %s' % scene.pending())

    info = {'workspace': 'acme', 'name': ['api'], 'access_token': '{{ token.access_token }}', 'api_url': '{{ api_url }}',
            'ca_path': '{{ ca_path }}'}
    tasks = token_task(no_log=False, cache=False) + token_task(no_log=False, cache=False) + [
        {'name': 'Repositories (500)', 'codeferry.bitbucket.repository_info': info, 'register': 'broken',
         'ignore_errors': True},
        {'name': 'Repositories', 'codeferry.bitbucket.repository_info': info, 'register': 'repos'}]
    tasks[0].update(register='refused', ignore_errors=True)
    tasks[1]['no_log'] = True
    scene.emu.fault(path_prefix='/site/oauth2/access_token', status=500)
    scene.emu.fault(path_prefix='/2.0/repositories', status=500)
    scene.emu.reset()
    play = scene.play(tasks, save=['refused', 'broken', 'repos'], play_vars=scene.vars())
    expect(play.rc == 0, 'the tasks after the 500s failed: %r' % play)
    refused, broken = play.results['refused'], play.results['broken']
    expect(refused.get('failed') and 'HTTP 500' in refused['msg'], 'token endpoint 500: %r' % refused.get('msg'))
    expect(broken.get('failed') and 'HTTP 500' in broken['msg'] and 'GET ' in broken['msg'], 'API 500: %r' % broken.get('msg'))
    expect(play.results['repos']['repositories'][0]['slug'] == 'api', 'the API call after the 500 did not work')
    after = scene.stats()
    expect(after['token'] == 2 and after['api'] == 2, 'a 500 was retried: %s' % after)
    return ('role rc=0 (%d checkouts) after 2+2 faults, %d token requests; 500s: "%s" / "%s", not retried'
            % (count, retried['token'], refused['msg'].split(': ', 1)[-1][:60], broken['msg'].split(': ', 1)[-1][:60]))


@drill('drop-mid-listing', 'the connections of listing pages 2 and 3 dropped (after page 1)',
       'the listing completes: every repository once')
def drop_mid_listing(scene):
    """A listing of 255 repositories (3 pages) whose later pages lose their connection once each."""
    scene.emu.fault(path_prefix='/2.0/repositories/acme', drop=True, count=2, after=1)
    tasks = token_task() + [{'name': 'List', 'codeferry.bitbucket.repository_info': {
        'workspace': 'acme', 'access_token': '{{ token.access_token }}', 'api_url': '{{ api_url }}', 'ca_path': '{{ ca_path }}'},
        'register': 'repos'}]
    scene.emu.reset()
    run = scene.play(tasks, save=['repos'], play_vars=scene.vars())
    expect(run.rc == 0, 'the listing failed: %r' % run)
    slugs = [item['slug'] for item in run.results['repos']['repositories']]
    expected = len(emulator_data()['workspaces'][0]['repositories']) + 250
    expect(len(slugs) == len(set(slugs)) == expected, '%d repositories (%d distinct), expected %d'
           % (len(slugs), len(set(slugs)), expected))
    stats = scene.stats()
    expect(scene.pending() == [] and stats['api'] == 5, 'API requests: %d, expected 3 pages + 2 retries' % stats['api'])
    return 'rc=0, %d repositories, each once, in %d API requests (2 dropped)' % (len(slugs), stats['api'])


@drill('slow-token-endpoint', 'token endpoint answers after 3 s, timeout 1 s',
       'that task fails with a timeout message, bounded; the next task gets a token')
def slow_token_endpoint(scene):
    """A token endpoint slower than timeout: retried, then a clear failure; not a hang."""
    tasks = token_task(no_log=False, timeout=1) + token_task(timeout=1)
    tasks[0].update(register='slow', ignore_errors=True, name='Token from a slow endpoint')
    # A POST that timed out may have minted a token already: it is not sent again.
    scene.emu.fault(path_prefix='/site/oauth2/access_token', delay_ms=3000)
    started = time.monotonic()
    run = scene.play(tasks, save=['slow', 'token'], play_vars=scene.vars())
    elapsed = time.monotonic() - started
    slow = run.results['slow']
    expect(slow.get('failed') and 'timed out after 1 seconds' in slow['msg'], 'the slow task: %r' % slow.get('msg'))
    expect(run.rc == 0 and run.results['token']['access_token'], 'the next task got no token: %r' % run)
    # A generous bound on a busy machine: what matters is that nothing waits for the 3 s answer forever.
    expect(elapsed < 150, 'took %.0f s' % elapsed)
    return 'rc=0, first task "%s", next task minted, %.0f s in all' % (slow['msg'].split(': ', 1)[-1][:90], elapsed)


@drill('token-expires-mid-play', 'every token expired after the first serial batch of a role run',
       'later batches succeed or fail with a clear message, and a re-run succeeds')
def token_expires_mid_play(scene):
    """Bitbucket drops the play's token between two serial batches."""
    expire = {'name': 'Bitbucket expires every token', 'run_once': True, 'delegate_to': 'localhost',
              'when': "inventory_hostname == 'web1'",
              'ansible.builtin.uri': {'url': scene.emu.base_url + '/_emulator/expire', 'method': 'POST',
                                      'ca_path': scene.emu.ca_file}}
    scene.emu.reset()
    first = scene.role(serial=1, after=[expire])
    counts = recap(first.stdout)
    expect(counts.get('web1', {}).get('failed') == '0', 'the first batch failed: %s' % counts)
    seen = 'rc=%d, %s' % (first.rc, ', '.join('%s failed=%s' % (host, counts[host]['failed']) for host in sorted(counts)))
    if first.rc != 0:
        # The token came from the cache, valid by its clock: git on the host is the first to be refused.
        expect('refused the credentials (wrong or expired token' in first.output, 'no clear message: %r' % first)
        seen += ' ("refused the credentials (wrong or expired token ...)")'
    again = scene.role()
    count = plain_role_success(scene, again)
    return '%s; re-run rc=0, %d checkouts at upstream, %d token requests in all' % (seen, count, scene.stats()['token'])


@drill('rotated-refresh-token-reused', 'two controllers renewing one user token at once from a shared cache, then a third '
       'with a stale copy of the cache (its refresh token already rotated away)',
       'both sharing controllers succeed, each refresh token used once; the stale one fails clearly, caches intact')
def rotated_refresh_token_reused(scene):
    """Rotating refresh tokens (Bitbucket since 2026-05): a used one fails at once."""
    cache, stale = scene.tmp / 'cache', scene.tmp / 'stale-cache'
    authorize = scene.play(token_task(grant_type='authorization_code', code='{{ code }}'),
                           play_vars=scene.vars(code=new_code(scene.emu, 'alice')))
    expect(authorize.rc == 0, 'authorization failed: %r' % authorize)
    shutil.copytree(cache, stale)
    scene.vars(cache='stale-cache')
    renew = token_task(grant_type='refresh_token', min_ttl=7200)
    scene.emu.reset()
    runs = {}
    threads = [threading.Thread(target=lambda name=name: runs.__setitem__(name, scene.play(
        renew, runner=scene.runner(name), save=['token'], play_vars=scene.vars()))) for name in ('a', 'b')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, run in sorted(runs.items()):
        expect(run.rc == 0, 'controller %s failed: %r' % (name, run))
    tokens = {run.results['token']['access_token'] for run in runs.values()}
    refreshes = {run.results['token']['refresh_token'] for run in runs.values()}
    expect(scene.stats()['token'] == 2 and len(tokens) == 2 and len(refreshes) == 2,
           'token requests %d, %d tokens, %d refresh tokens' % (scene.stats()['token'], len(tokens), len(refreshes)))
    (entry,) = cache.glob('*.json')
    newest = json.loads(entry.read_text())['refresh_token']
    expect(newest in refreshes, 'the shared cache does not hold the newest refresh token')

    late = token_task(no_log=False, grant_type='refresh_token', min_ttl=7200)
    late[0]['ignore_errors'] = True
    run = scene.play(late, save=['token'], play_vars=scene.vars(cache='stale-cache'))
    message = run.results['token'].get('msg', '')
    expect(run.results['token'].get('failed') and 'Invalid refresh_token' in message and 'another controller' in message
           and 'authorize again' in message, 'the stale copy: %r' % message)
    again = scene.play(renew, save=['token'], play_vars=scene.vars())
    expect(again.rc == 0 and again.results['token']['changed'], 'the shared cache no longer works: %r' % again)
    return 'both sharing runs rc=0, 2 token requests, 2 distinct refresh tokens; stale copy: "...%s"' % message[-200:]


def primed_cache(scene):
    """A cache entry from one oauth_token run; returns its path."""
    run = scene.play(token_task(), play_vars=scene.vars())
    expect(run.rc == 0, 'priming the cache failed: %r' % run)
    (path,) = (scene.tmp / 'cache').glob('*.json')
    return path


def warm_role_with_local_work(scene):
    """A role run on web1, with an untracked file put into each checkout; returns those files."""
    expect(scene.role(limit='web1').rc == 0, 'the first role run failed')
    return [add_local_note(scene.tmp / 'hosts' / 'web1' / slug) for slug in ('api', 'web')]


@drill('corrupt-cache', 'the token cache file overwritten with half a JSON document',
       'a warning, a new token, the cache file rewritten; local work in the checkouts kept')
def corrupt_cache(scene):
    """A cache file that no longer parses, in a warm role run."""
    notes = warm_role_with_local_work(scene)
    (path,) = (scene.tmp / 'cache').glob('*.json')
    path.write_text('{"access_token": "at-')
    scene.emu.reset()
    run = scene.role(limit='web1')
    plain_role_success(scene, run, hosts=('web1',))
    expect('ignoring the token cache file' in run.output and 'it is not valid JSON' in run.output, 'no warning: %r' % run)
    expect(scene.stats()['token'] == 1, 'token requests: %d' % scene.stats()['token'])
    expect(all(note.exists() for note in notes), 'local work lost')
    return 'rc=0, warning "it is not valid JSON; it will be replaced", 1 token request, %d local files kept' % len(notes)


@drill('symlinked-cache', 'the token cache file replaced by a symbolic link to a file elsewhere (a planted token)',
       'the link is not followed: a warning, a new token, the link replaced by a file, its target untouched')
def symlinked_cache(scene):
    """A cache file that is a link: neither read nor written through."""
    path = primed_cache(scene)
    target = scene.tmp / 'elsewhere' / 'planted.json'
    target.parent.mkdir()
    target.write_text(path.read_text())
    before = target.read_bytes()
    path.unlink()
    path.symlink_to(target)
    scene.emu.reset()
    tasks = token_task(no_log=False) + [lookup_task()]
    run = scene.play(tasks, save=['token', 'looked_up'], play_vars=scene.vars())
    expect(run.rc == 0, 'the run failed: %r' % run)
    expect('it is a symbolic link' in run.output, 'no warning about the link: %r' % run)
    expect(not path.is_symlink() and target.read_bytes() == before, 'the link was followed')
    token = run.results['token']
    expect(token['changed'] and run.results['looked_up'] == token['access_token'], 'the lookup did not share the new token')
    expect(scene.stats()['token'] == 1, 'token requests: %d' % scene.stats()['token'])
    return 'rc=0, warning "it is a symbolic link; it will be replaced", 1 token request, the lookup reused it, target unchanged'


@drill('fifty-forks-cold-cache', '50 hosts at forks=50 each running the oauth_token lookup against an empty cache',
       'one token request, the same token on every host')
def fifty_forks_cold_cache(scene):
    """The lookup's lock, under 50 concurrent workers (the module's case is an integration test)."""
    hosts = ['node%02d' % number for number in range(50)]
    tasks = [lookup_task()]
    scene.emu.reset()
    started = time.monotonic()
    run = scene.play(tasks, save=['looked_up'], play_vars=scene.vars(), hosts=hosts, forks=50, timeout=600)
    elapsed = time.monotonic() - started
    expect(run.rc == 0, 'the run failed: %r' % run)
    tokens = set(run.results_by_host('looked_up').values())
    expect(len(run.by_host) == 50 and len(tokens) == 1, '%d hosts, %d distinct tokens' % (len(run.by_host), len(tokens)))
    expect(scene.stats()['token'] == 1, 'token requests: %d' % scene.stats()['token'])
    return 'rc=0, 50 hosts, 1 token request, 1 distinct token, %.0f s' % elapsed


@drill('unknown-ca', "the emulator's certificate, from a CA the system does not trust, on the token endpoint, the API "
       'and git; then ca_path set to that CA', 'every front end fails closed with a certificate error; with ca_path all work')
def unknown_ca(scene):
    """TLS verification is never skipped: a private CA needs ca_path."""
    token_args = {'client_id': '{{ client_id }}', 'client_secret': '{{ client_secret }}', 'token_url': '{{ token_url }}',
                  'cache_dir': '{{ cache_dir }}'}
    info_args = {'workspace': 'acme', 'name': ['api'], 'api_url': '{{ api_url }}', 'access_token': '{{ token }}'}
    dest = scene.tmp / 'srv' / 'api'
    tasks = []
    for suffix, extra in (('untrusted', {}), ('trusted', {'ca_path': '{{ ca_path }}'})):
        tasks += [
            {'name': 'Token ' + suffix, 'codeferry.bitbucket.oauth_token': dict(token_args, **extra),
             'register': 'token_' + suffix, 'ignore_errors': True},
            {'name': 'API ' + suffix, 'codeferry.bitbucket.repository_info': dict(info_args, **extra),
             'register': 'api_' + suffix, 'ignore_errors': True},
            dict(lookup_task('lookup_' + suffix, ca_path=bool(extra)), ignore_errors=True, register='lookup_task_' + suffix,
                 no_log=False),
            {'name': 'Checkout ' + suffix, 'codeferry.bitbucket.git_checkout': dict(
                {'repositories': [repo(scene, 'api', dest)], 'access_token': '{{ token }}'}, **extra),
             'register': 'git_' + suffix, 'ignore_errors': True}]
    names = ['%s_%s' % (kind, suffix) for suffix in ('untrusted', 'trusted') for kind in ('token', 'api', 'lookup_task', 'git')]
    run = scene.play(tasks, save=names, play_vars=scene.vars(**co_vars(scene)))
    refused = []
    for kind in ('token', 'api', 'lookup_task', 'git'):
        bad, good = run.results['%s_untrusted' % kind], run.results['%s_trusted' % kind]
        message = bad.get('msg', '')
        expect(bad.get('failed') and 'certificate' in message.lower(), '%s without ca_path: %r' % (kind, message))
        expect(not good.get('failed'), '%s with ca_path failed: %r' % (kind, good.get('msg')))
        refused.append(kind)
    expect(not dest.exists() or git(dest, 'rev-parse', 'HEAD') == upstream(scene.emu, 'api'), 'the checkout is wrong')
    sample = run.results['token_untrusted']['msg']
    return 'without ca_path %s refused ("...%s"); with ca_path all 4 worked' % (
        '/'.join(refused), sample[sample.lower().find('certificate'):][:70])


def fault_git(scene, slug):
    """Drop the connection of acme/<slug>'s second git-upload-pack request: the first lists refs, the second sends the pack."""
    scene.emu.fault(path_prefix='/acme/%s.git/git-upload-pack' % slug, drop=True, after=1)


@drill('git-drop-during-clone', 'the connection dropped during the pack transfer of a clone (another repository in the '
       'same task unaffected)', 'that clone fails clearly leaving nothing at dest, the other succeeds; a re-run clones it')
def git_drop_during_clone(scene):
    """No half clone: a dropped transfer leaves dest absent, and the next run repairs."""
    srv = scene.tmp / 'srv'
    repos = [repo(scene, 'web', srv / 'web'), repo(scene, 'infra', srv / 'infra')]
    variables = co_vars(scene)
    fault_git(scene, 'web')
    broken = scene.play(checkout_task(repos), save=['co'], play_vars=variables)
    result = broken.results['co']
    failed = failures(result)
    expect(sorted(failed) == [str(srv / 'web')], 'failed: %s' % sorted(failed))
    message = failed[str(srv / 'web')]
    expect('nothing was left at' in message and 'run again' in message, 'unclear message: %r' % message)
    expect(not (srv / 'web').exists() and leftovers(srv, ['infra']) == [], 'left behind: %s' % leftovers(srv, ['infra']))
    expect(scene.pending() == [], 'the fault was not used')
    note = add_local_note(srv / 'infra')
    again = scene.play(checkout_task(repos), save=['co'], play_vars=variables)
    expect(again.rc == 0 and again.results['co']['changed'], 'the re-run failed: %r' % again)
    expect(git(srv / 'web', 'rev-parse', 'HEAD') == upstream(scene.emu, 'web') and note.exists(), 'after the re-run')
    return 'failed=%s: "...%s"; nothing at dest or beside it; re-run rc=0 cloned it' % (result.get('failed'), message[-110:])


@drill('git-drop-during-fetch', 'the connection dropped during the fetch of two checkouts behind upstream, one with '
       'an untracked file, one with a modified tracked file (force: true)',
       'both fail clearly with HEAD and files as they were; a re-run updates both, the untracked file kept and the edit '
       'saved under a backup ref')
def git_drop_during_fetch(scene):
    """An interrupted update never loses local work, and a re-run finishes it."""
    srv = scene.tmp / 'srv'
    repos = [repo(scene, 'api', srv / 'api'), repo(scene, 'infra', srv / 'infra')]
    variables = co_vars(scene)
    expect(scene.play(checkout_task(repos), play_vars=variables).rc == 0, 'the first checkout failed')
    before = {slug: git(srv / slug, 'rev-parse', 'HEAD') for slug in ('api', 'infra')}
    note = add_local_note(srv / 'api')
    edited = srv / 'infra' / 'README.md'
    edited.write_text('edited on the host\n')
    for slug in ('api', 'infra'):
        scene.emu.commit('acme/' + slug, {'drill/fetch.txt': 'pushed %s\n' % secrets.token_hex(4)})
        fault_git(scene, slug)
    broken = scene.play(checkout_task(repos, force=True), save=['co'], play_vars=variables)
    failed = failures(broken.results['co'])
    expect(sorted(failed) == sorted(str(srv / slug) for slug in ('api', 'infra')), 'failed: %s' % sorted(failed))
    for slug, message in ((slug, failed[str(srv / slug)]) for slug in ('api', 'infra')):
        expect('git fetch from' in message, 'unclear message for %s: %r' % (slug, message))
        expect(git(srv / slug, 'rev-parse', 'HEAD') == before[slug], '%s moved' % slug)
    expect(note.exists() and edited.read_text() == 'edited on the host\n', 'local work changed by the failed run')
    expect(scene.pending() == [], 'a fault was not used: %s' % scene.pending())
    again = scene.play(checkout_task(repos, force=True), save=['co'], play_vars=variables)
    expect(again.rc == 0, 'the re-run failed: %r' % again)
    for slug in ('api', 'infra'):
        expect(git(srv / slug, 'rev-parse', 'HEAD') == upstream(scene.emu, slug), '%s is not at upstream' % slug)
    backup = again.results['co']['repositories'][1].get('backup_ref')
    expect(note.exists() and backup and git(srv / 'infra', 'show', backup + ':README.md') == 'edited on the host',
           'local work lost after the re-run')
    return 'failed=%s, both "git fetch from ... failed: ...%s", HEADs and files unchanged; re-run rc=0, note kept, edit in %s' % (
        broken.results['co'].get('failed'), failed[str(srv / 'api')][-60:], backup.rsplit('/', 1)[0] + '/...')


@contextlib.contextmanager
def small_disk(path, size):
    """A tmpfs of size at path, unmounted afterwards; DrillSkipped where mounting is impossible."""
    path.mkdir(parents=True)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'tmpfs', str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        raise DrillSkipped('cannot mount a tmpfs as checkout root (needs root with CAP_SYS_ADMIN): %s'
                           % (mounted.stderr.strip() or 'mount exited with %d' % mounted.returncode))
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], capture_output=True, check=False)


@drill('disk-full-during-clone', 'a clone of a repository with a 3 MB file into a 1.5 MB tmpfs, beside an existing '
       'checkout with an untracked file', 'that clone fails with "No space left on device" and leaves nothing; the other '
       'checkout and its file are kept; after the disk grows, a re-run clones it')
def disk_full_during_clone(scene):
    """ENOSPC in the middle of a clone: the temporary clone goes, the message says why."""
    with small_disk(scene.tmp / 'small', '1536k') as root:
        repos = [repo(scene, 'infra', root / 'infra'), repo(scene, 'bulk', root / 'bulk')]
        variables = co_vars(scene)
        expect(scene.play(checkout_task(repos[:1]), play_vars=variables).rc == 0, 'the small clone failed')
        note = add_local_note(root / 'infra')
        scene.emu.commit('acme/bulk', {'blob.txt': secrets.token_hex(1536 * 1024)}, message='Add a large file')
        full = scene.play(checkout_task(repos), save=['co'], play_vars=variables)
        failed = failures(full.results['co'])
        expect(sorted(failed) == [str(root / 'bulk')], 'failed: %s' % sorted(failed))
        message = failed[str(root / 'bulk')]
        expect('No space left on device' in message, 'the message does not say the disk is full: %r' % message)
        expect(leftovers(root, ['infra', LOCAL_NOTE]) == [] and note.exists(), 'left behind: %s' % leftovers(root, ['infra']))
        subprocess.run(['mount', '-o', 'remount,size=32m', str(root)], check=True, capture_output=True)
        again = scene.play(checkout_task(repos), save=['co'], play_vars=variables)
        expect(again.rc == 0, 'the re-run failed: %r' % again)
        expect(git(root / 'bulk', 'rev-parse', 'HEAD') == upstream(scene.emu, 'bulk') and note.exists(), 'after the re-run')
    return 'failed=True: "...%s"; nothing left, the other checkout and its file kept; re-run at 32 MB rc=0' % message[-90:]


def tarball(*members):
    """A .tar.gz of (name, kind, value): kind file (value: text), dir, or symlink (value: target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == 'file':
                data = value.encode()
                info.size, info.mode = len(data), 0o644
            elif kind == 'dir':
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.type, info.linkname = tarfile.SYMTYPE, value
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tree(dest):
    """relative path -> bytes of every file under dest."""
    found = {}
    for directory, dummy, names in os.walk(dest):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, dest)] = handle.read()
    return found


@drill('archive-escape', 'archives (method: archive) whose entries climb out with "..", use an absolute path, or write '
       'through a link that points outside', 'each repository fails as an unsafe archive; nothing is written outside '
       'dest; an existing tree stays as it was; a re-run with good archives works')
def archive_escape(scene):
    """Hostile archives from the server, for a new checkout and for the update of an old one."""
    srv = scene.tmp / 'srv'
    escape = '/tmp/codeferry-drill-%s.txt' % secrets.token_hex(6)
    refs = ls_remote(scene.emu, 'api')
    old, new = refs['refs/heads/main'], refs['refs/heads/release/1.x']
    variables = co_vars(scene)
    first = scene.play(checkout_task([repo(scene, 'api', srv / 'api', commit=old)], method='archive'), play_vars=variables)
    expect(first.rc == 0, 'the first archive checkout failed: %r' % first)
    before = tree(srv / 'api')
    hostile = {
        'api': tarball(('acme-api-0/', 'dir', None), ('acme-api-0/../../escaped-dotdot.txt', 'file', 'x')),
        'web': tarball(('acme-web-0/README.md', 'file', 'x'), (escape, 'file', 'x')),
        'infra': tarball(('acme-infra-0/', 'dir', None), ('acme-infra-0/out', 'symlink', '../../../outside'),
                         ('acme-infra-0/out/escaped-link.txt', 'file', 'x')),
    }
    for slug, body in hostile.items():
        scene.emu.fault(path_prefix='/acme/%s/get/' % slug, status=200, body_base64=base64.b64encode(body).decode(),
                        headers={'Content-Type': 'application/x-gzip'})
    repos = [repo(scene, 'api', srv / 'api', commit=new), repo(scene, 'web', srv / 'web', commit=upstream(scene.emu, 'web')),
             repo(scene, 'infra', srv / 'infra', commit=upstream(scene.emu, 'infra'))]
    run = scene.play(checkout_task(repos, method='archive'), save=['co'], play_vars=variables)
    failed = failures(run.results['co'])
    expect(sorted(failed) == sorted(str(srv / slug) for slug in ('api', 'infra', 'web')), 'failed: %s' % sorted(failed))
    expect(all('unsafe archive' in message for message in failed.values()), 'messages: %s' % list(failed.values()))
    expect(scene.pending() == [], 'a hostile archive was not fetched')
    strays = [os.path.join(directory, name) for directory, dummy, names in os.walk(scene.tmp) for name in names
              if name.startswith('escaped-')]
    expect(not strays and not os.path.exists(escape) and not (scene.tmp.parent / 'outside').exists(), 'escaped: %s' % strays)
    expect(tree(srv / 'api') == before and leftovers(srv, ['api']) == [], 'dest changed or leftovers: %s'
           % leftovers(srv, ['api']))
    again = scene.play(checkout_task(repos, method='archive'), save=['co'], play_vars=variables)
    expect(again.rc == 0 and all(entry['changed'] for entry in again.results['co']['repositories']), 'the re-run: %r' % again)
    return 'all 3 failed ("%s"), nothing outside dest, the old tree unchanged; re-run rc=0, 3 trees unpacked' % (
        failed[str(srv / 'api')].split(': ', 1)[-1][:80])
