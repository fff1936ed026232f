# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers for the git_checkout tests: a private emulator, real git, an argv-recording git wrapper, leak search."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from urllib.parse import quote, quote_plus

import requests

from ansible_collections.codeferry.bitbucket.plugins.module_utils import _git

WAT = 'ATCTT3xFfGN0acme+workspace/token='
CONSUMER = ('demoKey1234567890ab', 'demoSecret+With/Odd=Chars0123456789')
GIT = shutil.which('git')
IDENTITY = {'GIT_AUTHOR_NAME': 'Local Dev', 'GIT_AUTHOR_EMAIL': 'dev@example.invalid',
            'GIT_COMMITTER_NAME': 'Local Dev', 'GIT_COMMITTER_EMAIL': 'dev@example.invalid'}


def mint_token(emulator):
    """A fresh OAuth access token from the emulator (client credentials)."""
    response = requests.post(emulator.token_url, data={'grant_type': 'client_credentials'}, auth=CONSUMER,
                             verify=emulator.ca_file, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()['access_token']


def secret_forms(secret):
    """Every way the secret could be written down: raw, percent-encoded, in a Basic header."""
    forms = {secret, quote(secret, safe=''), quote(secret), quote_plus(secret), _git._store_quote(secret)}
    for user in ('x-token-auth', 'alice'):
        forms.add(base64.b64encode(('%s:%s' % (user, secret)).encode()).decode())
    return forms


def files_containing(root, secrets, skip=()):
    """Paths under root (links not followed) whose bytes contain any form of any secret."""
    needles = [form.encode() for secret in secrets for form in secret_forms(secret)]
    hits = []
    for directory, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if path in skip or os.path.islink(path):
                continue
            with open(path, 'rb') as handle:
                data = handle.read()
            if any(needle in data for needle in needles):
                hits.append(path)
    return hits


class World(object):
    """One test's view: the module's environment (with the argv-recording git first on PATH) and plain git."""

    def __init__(self, emulator, ca_file, tmp_path):
        self.emu = emulator
        self.ca_file = ca_file
        self.tmp = tmp_path
        self.bin = tmp_path / 'bin'
        self.bin.mkdir()
        self.argv_log = tmp_path / 'git-argv.log'
        wrapper = self.bin / 'git'
        wrapper.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%%s\\n" "$arg"; done >> %s\nprintf -- "----\\n" >> %s\n'
                           'exec %s "$@"\n' % (self.argv_log, self.argv_log, GIT))
        wrapper.chmod(0o755)
        self.argv_log.touch()
        self.argv_log.chmod(0o666)
        home = tmp_path / 'home'
        home.mkdir()
        # The host's own CA setting stays in place: ca_path must win over it.
        self.environ = dict(os.environ, PATH='%s:%s' % (self.bin, os.environ.get('PATH', '')), HOME=str(home))
        self.token = WAT

    def url(self, slug, workspace='acme'):
        return '%s/%s/%s.git' % (self.emu.git_url, workspace, slug)

    def params(self, repositories, **overrides):
        params = dict(repositories=repositories, access_token=self.token, username=None, password=None,
                      credential_mode='store', method='git', force=False, owner=None, group=None, mode=None,
                      ca_path=self.ca_file, validate_certs=True, timeout=30)
        params.update(overrides)
        return params

    def run(self, repositories, check_mode=False, http_factory=None, **overrides):
        """checkout_repositories(); returns (results, changed, failures)."""
        results, changed, failures, dummy = _git.checkout_repositories(
            self.params(repositories, **overrides), check_mode=check_mode, http_factory=http_factory, environ=self.environ)
        return results, changed, failures

    def one(self, check_mode=False, http_factory=None, **kwargs):
        """Run a single repository; kwargs go to the entry, except the module options named in overrides."""
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in (
            'access_token', 'username', 'password', 'credential_mode', 'method', 'force', 'owner', 'group', 'mode',
            'ca_path', 'validate_certs', 'timeout')}
        results, changed, failures = self.run([kwargs], check_mode=check_mode, http_factory=http_factory, **options)
        assert len(results) == 1
        return results[0]

    def git_env(self, **extra):
        env = dict(os.environ, HOME=str(self.tmp / 'home'), GIT_TERMINAL_PROMPT='0', LC_ALL='C')
        env.pop('GIT_SSL_CAINFO', None)
        env.update(IDENTITY)
        env.update(extra)
        return env

    def git(self, dest, *args, check=True, env=None, user=None):
        # As another user: its own primary group too, as a login would give it.
        as_user = dict(user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[]) if user else {}
        proc = subprocess.run([GIT] + list(args), cwd=str(dest), env=env or self.git_env(), capture_output=True, text=True,
                              check=False, **as_user)
        if check:
            assert proc.returncode == 0, 'git %s failed: %s' % (' '.join(args), proc.stderr)
        return proc.stdout.strip() if check else proc

    def remote(self, slug, ref='refs/heads/main'):
        helper = '!f() { echo username=x-token-auth; echo "password=$T"; }; f'
        out = subprocess.run([GIT, '-c', 'credential.helper=', '-c', 'credential.helper=' + helper, 'ls-remote', self.url(slug), ref],
                             env=self.git_env(T=WAT, GIT_SSL_CAINFO=self.emu.ca_file), capture_output=True, text=True, check=True).stdout
        return out.split('\t')[0]

    def git_requests(self):
        return self.emu.stats()['requests']['git']

    def argv(self):
        return self.argv_log.read_text()


def world_readable_dir(prefix):
    path = tempfile.mkdtemp(prefix=prefix, dir='/tmp')
    os.chmod(path, 0o755)
    return path


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)
