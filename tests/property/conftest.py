# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Generated bad input (hypothesis) against every module, filter and the lookup.

Two settings profiles, chosen with the environment variable HYPOTHESIS_PROFILE:
- ``ci`` (the default, what ``make test`` runs): derandomized and without an example database,
  so every run tries the same cases, in well under two minutes;
- ``explore``: random cases, ten times as many, for a local hunt for new failures:
  ``HYPOTHESIS_PROFILE=explore .venv/bin/pytest tests/property``.
A failure prints the falsifying example and its reproduction blob.

The session runs with HOME, the token cache directory and every BITBUCKET_* variable pointed
away from the real ones, so no case reads or writes anything outside its temporary directories.
The number of cases that ran is printed at the end ("generated cases: N").
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from hypothesis import HealthCheck, settings

from ansible.plugins.loader import init_plugin_loader

from property_helpers import CASES, PROFILE

# The same import set-up as the unit tests: ansible_collections.codeferry.bitbucket from this checkout.
_spec = importlib.util.spec_from_file_location('codeferry_unit_import_path', Path(__file__).parents[1] / 'unit' / 'conftest.py')
_unit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_unit)
# Ansible's collection loader, so that the lookup loads by name as in a play. It must come before
# anything imports the collection.
init_plugin_loader([str(_unit._collections_parent())])  # pylint: disable=protected-access

_COMMON = dict(database=None, deadline=timedelta(seconds=10), print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                      HealthCheck.filter_too_much])
settings.register_profile('ci', derandomize=True, **_COMMON)
settings.register_profile('explore', derandomize=False, **_COMMON)
settings.load_profile(PROFILE)

CREDENTIAL_VARIABLES = ('BITBUCKET_CLIENT_ID', 'BITBUCKET_CLIENT_SECRET', 'BITBUCKET_ACCESS_TOKEN', 'BITBUCKET_USERNAME',
                        'BITBUCKET_PASSWORD')


class Target(object):
    """The emulator as the cases see it: URLs, the bundled credentials, and the secrets to look for."""

    def __init__(self, emulator, demo_data, root):
        self.emulator = emulator
        self.root = root
        self.api_url = emulator.api_url
        self.token_url = emulator.token_url
        self.git_url = emulator.git_url
        self.ca_file = emulator.ca_file
        self.hostport = emulator.base_url.partition('://')[2]
        consumer = demo_data['consumers'][0]
        self.client_id, self.client_secret = consumer['key'], consumer['secret']
        acme = [space for space in demo_data['workspaces'] if space['slug'] == 'acme'][0]
        self.workspace_token = acme['access_tokens'][0]['token']
        alice = demo_data['users'][0]
        self.username, self.app_password = alice['username'], alice['app_passwords'][0]['password']
        self.cache_dir = tempfile.mkdtemp(prefix='cache-', dir=root)
        self.static_secrets = [entry['secret'] for entry in demo_data['consumers']]
        self.static_secrets += [entry['token'] for space in demo_data['workspaces'] for entry in space.get('access_tokens', [])]
        for user in demo_data['users']:
            self.static_secrets += [user['password']] if user.get('password') else []
            self.static_secrets += [entry['token'] for entry in user.get('api_tokens', [])]
            self.static_secrets += [entry['password'] for entry in user.get('app_passwords', [])]

    def secrets(self, *extra):
        """Every secret a case must not show: the bundled ones, every token issued so far, and extra."""
        return self.static_secrets + list(self.emulator.stats()['tokens']) + [value for value in extra if value]

    def connection(self, **extra):
        """Options that reach the emulator with the consumer's credentials and a private token cache."""
        args = dict(api_url=self.api_url, token_url=self.token_url, ca_path=self.ca_file, timeout=10,
                    client_id=self.client_id, client_secret=self.client_secret, cache_dir=self.cache_dir)
        args.update(extra)
        return args

    @contextlib.contextmanager
    def case_dir(self):
        """A fresh directory for one case, removed afterwards."""
        path = tempfile.mkdtemp(prefix='case-', dir=self.root)
        try:
            yield path
        finally:
            # rm, not shutil.rmtree: a generated 100 KB path can be a tree 20,000 directories deep.
            subprocess.run(['rm', '-rf', '--', path], check=False)


@pytest.fixture(scope='session', autouse=True)
def isolated_environment(tmp_path_factory):
    """HOME, caches and credentials of the session point at temporary directories, never at the real ones."""
    home = tmp_path_factory.mktemp('home')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('HOME', str(home))
        patch.setenv('XDG_CACHE_HOME', str(home / '.cache'))
        patch.setenv('BITBUCKET_TOKEN_CACHE_DIR', str(home / 'default-token-cache'))
        patch.setenv('GIT_CONFIG_NOSYSTEM', '1')
        for name in CREDENTIAL_VARIABLES + ('GIT_SSL_CAINFO', 'GIT_ASKPASS', 'SSH_ASKPASS'):
            patch.delenv(name, raising=False)
        yield home


@pytest.fixture(scope='session')
def target(emulator, demo_data, tmp_path_factory, isolated_environment):
    """The session's emulator with the bundled credentials (see Target)."""
    return Target(emulator, demo_data, str(tmp_path_factory.mktemp('property')))


def pytest_terminal_summary(terminalreporter):
    """Print how many generated cases ran, in total and per test."""
    if not CASES:
        return
    terminalreporter.write_sep('-', 'generated cases: %d (profile %s)' % (sum(CASES.values()), PROFILE))
    for name, number in sorted(CASES.items()):
        terminalreporter.write_line('%6d  %s' % (number, name))
