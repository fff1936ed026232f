# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of git_checkout with transport=controller: bare mirrors, bundles and archives.

One bare mirror per repository lives under the mirror directory. A lock file beside each mirror
serialises the forks of a run; a mirror is fetched at most once per ansible-playbook run, and not
at all when it already holds the pinned commit. The fetch runs through the same GitRunner as on
hosts, so the token reaches git only through the git child's environment: an Authorization header
(Basic, or Bearer for a Data Center token) scoped to the repository's origin, sent with the first
request.

Hosts get incremental bundles: from the commits they report (their HEAD, remote-tracking refs and
the last commit this collection checked out) to the pin, built in a throwaway repository that
borrows the mirror's objects, so that concurrent forks never change the mirror's refs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile

from urllib.parse import urlsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import BitbucketError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._git import (
    ArchiveCheckout, CheckoutError, Credential, GitError, GitRunner, RepoSpec, diff_of, new_result, read_text, remove_tree,
    summary)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import CLOUD, PluginHttp, redact
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import CacheError, lock_exclusive, open_private_directory

DEFAULT_MIRROR_DIR = '~/.cache/codeferry.bitbucket/mirrors'
FETCHED_MARKER = 'codeferry-fetched'      # inside the bare mirror: the run that fetched it last
HEAD_REF = 'refs/codeferry/head'          # the remote's default branch, as last fetched
PIN_REF = 'refs/codeferry/pin'            # the ref a bundle carries when no branch or tag is asked for
LOCK_TIMEOUT = 600
_SEGMENT = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9._-]*$')
_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)


def run_id():
    """One ansible-playbook run: the worker's parent process, with its start time against reused process ids."""
    parent = os.getppid()
    try:
        with open('/proc/%d/stat' % parent, encoding='ascii') as handle:
            started = handle.read().rpartition(')')[2].split()[19]
    except (OSError, IndexError):
        started = '?'
    return '%d-%s' % (parent, started)


def open_mirror_root(path):
    """Create (0700) and check the mirror directory as the token cache directory is checked; returns its real path."""
    path = os.path.abspath(os.path.expanduser(path or DEFAULT_MIRROR_DIR))
    try:
        os.close(open_private_directory(path, label=('mirror', 'mirror_dir')))
    except CacheError as exc:
        raise ValidationError(str(exc)) from None
    return path


def make_private_dirs(path):
    """os.makedirs, with mode 0700 for every directory it creates (below the checked mirror root)."""
    if os.path.isdir(path):
        return
    make_private_dirs(os.path.dirname(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


class MirrorLock(object):
    """An exclusive flock on <mirror>.lock, a regular file of ours, never followed through a link."""

    def __init__(self, path, timeout=LOCK_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, 0o600)
        except OSError as exc:
            reason = 'it is a symbolic link' if exc.errno == errno.ELOOP else exc.strerror or exc
            raise ValidationError('cannot open the mirror lock %s: %s' % (self.path, reason))
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            raise ValidationError('the mirror lock %s is not a regular file of yours; remove it' % self.path)
        lock_exclusive(fd, self.path, self.timeout, 'the mirror lock')
        self.fd = fd
        return self

    def __exit__(self, *exc_info):
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None


class Mirror(object):
    """The bare mirror of one repository URL."""

    def __init__(self, root, url, git, run):
        parts = urlsplit(url)
        segments = [parts.netloc.lower().replace(':', '_')] + [s for s in parts.path.split('/') if s]
        if len(segments) < 2 or not all(_SEGMENT.match(s) for s in segments):
            raise ValidationError('url %s cannot be mirrored: every part of its host and path must be letters, digits, '
                                  '".", "_" or "-"' % url)
        if not segments[-1].endswith('.git'):
            segments[-1] += '.git'
        self.url = url
        self.path = os.path.join(root, *segments)
        self.git = git
        self.run = run
        self.fetched = False   # whether this call fetched it

    def _out(self, args, **kwargs):
        return self.git.out(args, self.path, **kwargs).strip()

    def _try(self, args):
        rc, out, dummy = self.git.run(args, self.path, check=False)
        return out.strip() if rc == 0 else None

    def _ref(self, ref):
        return self._try(['rev-parse', '--verify', '--quiet', ref + '^{commit}'])

    def has_commit(self, commit):
        return self._try(['cat-file', '-e', commit + '^{commit}']) is not None

    def existing(self, objects):
        """The commits among objects that the mirror has."""
        return [o for o in objects if self.has_commit(o)]

    def resolve(self, spec):
        """(commit, kind, name) for spec: fetched from the remote at most once per run, not at all when the pin is here."""
        make_private_dirs(os.path.dirname(self.path))
        with MirrorLock(self.path + '.lock'):
            if not os.path.isdir(os.path.join(self.path, 'objects')):
                self._create(spec)
            fetched = self._fetched_this_run()
            # Without a pin the mirror's refs are only good once this run has fetched them.
            found = self._lookup(spec) if spec.commit or fetched else None
            if found is None and not fetched:
                self._fetch(spec)
                found = self._lookup(spec)
            if found is None and spec.commit and not self.has_commit(spec.commit):
                # A commit that no branch or tag reaches any more: ask for it by its hash.
                self._fetch(spec, [spec.commit])
                found = self._lookup(spec)
        if found is None:
            if spec.commit and not self.has_commit(spec.commit):
                raise CheckoutError('commit %s does not exist in %s' % (spec.commit, spec.url))
            raise CheckoutError('%s has no branch or tag named %s' % (spec.url, spec.ref))
        return found

    def _create(self, spec):
        remove_tree(self.path)
        os.makedirs(self.path, mode=0o700)
        init = ['init', '--quiet', '--bare']
        if spec.commit and len(spec.commit) == 64:
            init.append('--object-format=sha256')
        self.git.out(init + [self.path], self.path)
        # No automatic gc: it could prune objects a bundle being built in another fork borrows.
        for key, value in (('remote.origin.url', spec.url), ('gc.auto', '0'), ('maintenance.auto', 'false')):
            self._out(['config', key, value])

    def _lookup(self, spec):
        commit = spec.commit
        for kind, name in spec.ref_kinds:
            tip = self._ref(('refs/heads/' if kind == 'branch' else 'refs/tags/') + name)
            if tip is not None:
                if commit is None:
                    return tip, kind, name
                if self.has_commit(commit):
                    return commit, kind, name
        if spec.ref is None:
            if commit is None:
                head = self._ref(HEAD_REF)
                return (head, None, None) if head else None
            if self.has_commit(commit):
                return commit, None, None
        return None

    def _fetched_this_run(self):
        try:
            with open(os.path.join(self.path, FETCHED_MARKER), encoding='utf-8') as handle:
                return handle.read().strip() == self.run
        except OSError:
            return False

    def _fetch(self, spec, refspecs=None):
        # Protocol v0: the ref advertisement and the pack, two requests for a mirror of every branch and tag.
        args = ['-c', 'protocol.version=0', 'fetch', '--quiet', '--prune', '--no-tags', '--no-recurse-submodules', 'origin']
        args += refspecs or ['+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*', '+HEAD:' + HEAD_REF]
        rc, dummy, err = self.git.run(args, self.path, network=True, check=False, origin=spec.base, url=spec.url)
        if rc != 0:
            lowered = err.lower()
            if 'authentication failed' in lowered or 'http 401' in lowered or 'http 403' in lowered:
                raise CheckoutError('%s refused the credentials (wrong or expired token, or no read access to the '
                                    'repository): %s' % (spec.url, ' / '.join(err.strip().splitlines()[-3:])))
            if refspecs:
                return  # the commit is not served by hash either: resolve() says it does not exist
            raise CheckoutError('fetch of %s into the mirror %s failed: %s'
                                % (spec.url, self.path, ' / '.join(err.strip().splitlines()[-3:]) or 'exit code %d' % rc))
        self.fetched = True
        with open(os.path.join(self.path, FETCHED_MARKER), 'w', encoding='utf-8') as handle:
            handle.write(self.run + '\n')

    # -- what a host gets

    def bundle(self, workdir, commit, kind, name, have, depth=None, new=False):
        """Write workdir/objects.bundle from the host's commits (have) to commit; returns a description of it."""
        scratch = os.path.join(workdir, 'scratch.git')
        init = ['init', '--quiet', '--bare'] + (['--object-format=sha256'] if len(commit) == 64 else [])
        self.git.out(init + [scratch], workdir)
        with open(os.path.join(scratch, 'objects', 'info', 'alternates'), 'w', encoding='utf-8') as handle:
            handle.write(os.path.join(self.path, 'objects') + '\n')
        if kind == 'branch':
            ref, target = 'refs/heads/' + name, commit
        elif kind == 'tag':
            ref = 'refs/tags/' + name
            # The tag object itself when it still names this commit, so that the host's tag is annotated too.
            tag = self._try(['rev-parse', '--verify', '--quiet', ref])
            target = tag if tag and self._ref(ref) == commit else commit
        else:
            ref, target = PIN_REF, commit
        self.git.out(['update-ref', ref, target], scratch)
        prerequisites = self.existing(have)
        source, shallow = scratch, []
        if not prerequisites and depth and new:
            source = os.path.join(workdir, 'shallow.git')
            self.git.out(init + [source], workdir)
            self.git.out(['fetch', '--quiet', '--no-tags', '--depth=%d' % depth, 'file://' + scratch,
                          '+%s:%s' % (ref, ref)], source)
            shallow = (read_text(os.path.join(source, 'shallow')) or '').split()
        rev_args = [ref] + (['--not'] + prerequisites if prerequisites else [])
        count = int(self.git.out(['rev-list', '--count'] + rev_args, source).strip() or 0)
        if count == 0:
            # The host's commits already contain this one (a shallow host going back in history): send it all.
            prerequisites, rev_args = [], [ref]
            count = int(self.git.out(['rev-list', '--count', ref], source).strip())
        path = os.path.join(workdir, 'objects.bundle')
        try:
            self.git.out(['bundle', 'create', '--quiet', path] + rev_args, source)
        except GitError as exc:
            raise CheckoutError('cannot build the bundle of %s for this host: %s' % (self.url, exc))
        return {'path': path, 'kind': 'bundle', 'bytes': os.path.getsize(path), 'commits': count,
                'prerequisites': prerequisites, 'shallow': shallow}

    def archive(self, spec, credential, http_factory, flavor=CLOUD):
        """The path of the .tar.gz of spec.commit: downloaded once, then kept beside the mirror."""
        directory = self.path[:-len('.git')] + '.archives'
        path = os.path.join(directory, spec.commit + '.tar.gz')
        make_private_dirs(directory)
        with MirrorLock(self.path + '.lock'):
            if os.path.isfile(path) and not os.path.islink(path):
                return path, False
            options = {'uid': -1, 'gid': -1, 'check_mode': False, 'transport': 'direct', 'flavor': flavor}
            body = ArchiveCheckout(spec, options, credential, http_factory).download()
            fd, tmp = tempfile.mkstemp(prefix='.download-', dir=directory)
            try:
                with os.fdopen(fd, 'wb') as handle:
                    handle.write(body)
                os.replace(tmp, path)
            except BaseException:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                raise
        return path, True


# Options the host never sees with transport=controller: the credential stays on the controller.
CONTROLLER_ONLY = ('access_token', 'username', 'password', 'mirror_dir', 'transport')


class ControllerCheckout(object):
    """git_checkout with transport=controller, given two callables of the action plugin.

    execute(module_args) runs the module on the host and returns its result; send(local_path, name)
    copies a file over the Ansible connection and returns its path on the host.
    """

    def __init__(self, params, execute, send, credential_mode_given=False, run=None):
        self.params = params
        self.execute = execute
        self.send = send
        self.credential_mode_given = credential_mode_given
        self.run_id = run or run_id()
        self.credential = Credential.from_params(params)
        self.secrets = self.credential.secrets() if self.credential else []
        self.warnings = []

    def run(self):
        params = self.params
        if params.get('credential_mode') not in (None, 'store') and self.credential_mode_given:
            self.warnings.append('credential_mode=%s is ignored with transport=controller: the credential never reaches '
                                 'the host, and what an earlier direct run left there is removed' % params['credential_mode'])
        entries = params.get('repositories') or []
        if not entries:
            raise ValidationError('repositories is empty: give at least one {url, dest, commit or ref}')
        root = open_mirror_root(params.get('mirror_dir'))
        with tempfile.TemporaryDirectory(prefix='codeferry-controller-') as work:
            ca_file = None
            if params.get('ca_content'):
                ca_file = os.path.join(work, 'ca.pem')
                with open(ca_file, 'w', encoding='utf-8') as handle:
                    handle.write(params['ca_content'])
            self.git = GitRunner(self.credential, ca_path=ca_file, validate_certs=params.get('validate_certs', True),
                                 timeout=params.get('timeout'), header_auth=True)
            self.secrets = self.git.secrets()
            self.http_factory = lambda: PluginHttp(validate_certs=params.get('validate_certs', True), ca_path=ca_file,
                                                   timeout=params.get('timeout'))
            plans = [self._plan(root, index, entry) for index, entry in enumerate(entries)]
            return self._checkout(plans, work)

    def _plan(self, root, index, entry):
        plan = {'index': index, 'entry': entry, 'result': None, 'transfer': None}
        try:
            spec = RepoSpec(entry, self.params.get('root'))
            plan['spec'] = spec
            plan['mirror'] = Mirror(root, spec.url, self.git, self.run_id)
            plan['host'] = {'url': spec.url, 'dest': spec.dest, 'commit': spec.commit, 'ref': spec.ref, 'depth': spec.depth}
            if spec.commit is None and self.params.get('method') != 'archive':
                # Only the mirror knows where the ref points. With a pin, a host at it needs no mirror at all.
                plan['host'] = self._pinned(plan)
        except BitbucketError as exc:
            plan['result'] = self._failed(entry, exc)
        return plan

    def _pinned(self, plan):
        """The host entry with the commit from the mirror, and the ref named in full (refs/heads/ or refs/tags/)."""
        commit, kind, name = plan['pin'] = plan['mirror'].resolve(plan['spec'])
        ref = None if kind is None else ('refs/heads/' if kind == 'branch' else 'refs/tags/') + name
        return dict(plan['host'], commit=commit, ref=ref)

    def _failed(self, entry, exc, result=None):
        entry = entry if isinstance(entry, dict) else {}
        failed = dict(result or new_result(entry.get('dest'), entry.get('url'), self.params.get('method'), entry.get('ref'),
                                           entry.get('commit')))
        failed.update(action='failed', changed=False, failed=True, msg=redact(str(exc), self.secrets))
        failed['summary'] = summary(failed)
        return failed

    def _host_args(self, repositories):
        args = dict((key, value) for key, value in self.params.items() if key not in CONTROLLER_ONLY and value is not None)
        args.update(transport='controller', credential_mode='ephemeral', repositories=repositories)
        return args

    def _call(self, plans, key):
        """Run the module for plans (their plan[key] entries); a result per plan, or the module's whole failure."""
        answer = self.execute(self._host_args([plan[key] for plan in plans]))
        self.warnings.extend(answer.get('warnings') or [])
        results = answer.get('repositories')
        if not isinstance(results, list) or len(results) != len(plans):
            return answer
        for plan, result in zip(plans, results):
            plan['result'] = result
        return None

    def _checkout(self, plans, work):
        todo = [plan for plan in plans if plan['result'] is None]
        whole = self._call(todo, 'host') if todo else None
        if whole is not None:
            return self._finish(whole)
        wanting = [plan for plan in todo if plan['result'].get('action') == 'needs_objects']
        ready = []
        for number, plan in enumerate(wanting):
            try:
                plan['again'] = self._transfer(plan, work, number)
                ready.append(plan)
            except BitbucketError as exc:
                plan['result'] = self._failed(plan['entry'], exc, plan['result'])
        whole = self._call(ready, 'again') if ready else None
        if whole is not None:
            return self._finish(whole)
        results = []
        for plan in plans:
            result = plan['result']
            for key in ('have', 'new'):
                result.pop(key, None)
            if plan.get('spec') is not None:
                result['ref'] = plan['spec'].ref
            result['transfer'] = plan['transfer']
            results.append(result)
        failures = ['%s: %s' % (r.get('dest') or 'repositories[%d]' % i, r.get('msg')) for i, r in enumerate(results)
                    if r.get('failed')]
        answer = {'changed': any(r.get('changed') for r in results), 'repositories': results,
                  'diff': [diff_of(r) for r in results]}
        if failures:
            answer.update(failed=True, msg='%d of %d repositories failed: %s' % (len(failures), len(results), '; '.join(failures)))
        return self._finish(answer)

    def _transfer(self, plan, work, number):
        """Build what the host lacks for plan and copy it over; returns the host's entry for the second run."""
        spec, result = plan['spec'], plan['result']
        directory = os.path.join(work, 'transfer-%d' % number)
        os.mkdir(directory, 0o700)
        if self.params.get('method') == 'archive':
            path, downloaded = plan['mirror'].archive(spec, self.credential, self.http_factory,
                                                      self.params.get('flavor') or CLOUD)
            plan['transfer'] = {'kind': 'archive', 'bytes': os.path.getsize(path), 'downloaded': downloaded}
            return dict(plan['host'], archive=self.send(path, 'archive-%d.tar.gz' % plan['index']))
        entry = self._pinned(plan) if 'pin' not in plan else dict(plan['host'])
        commit, kind, name = plan['pin']
        bundle = plan['mirror'].bundle(directory, commit, kind, name, result.get('have') or [], depth=spec.depth,
                                       new=bool(result.get('new')))
        plan['transfer'] = dict((key, bundle[key]) for key in ('kind', 'bytes', 'commits', 'prerequisites'))
        plan['transfer']['shallow'] = bool(bundle['shallow'])
        entry['bundle'] = self.send(bundle['path'], 'objects-%d.bundle' % plan['index'])
        if bundle['shallow']:
            entry['bundle_shallow'] = bundle['shallow']
        return entry

    def _finish(self, answer):
        answer = dict(answer)
        answer.pop('invocation', None)
        if self.warnings:
            answer['warnings'] = self.warnings
        return answer
