"""Fixtures that run real ansible-playbook processes against the emulator.

The collection is exposed to Ansible through a temporary collections path whose
ansible_collections/codeferry/bitbucket entry links to this repository.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.path.dirname(sys.executable)


@pytest.fixture(scope='session')
def collections_path(tmp_path_factory):
    root = tmp_path_factory.mktemp('collections')
    namespace = root / 'ansible_collections' / 'codeferry'
    namespace.mkdir(parents=True)
    (namespace / 'bitbucket').symlink_to(REPO_ROOT)
    return str(root)


class PlaybookRun:
    """The outcome of one ansible-playbook process."""

    def __init__(self, proc, results_prefix, hosts):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.output = proc.stdout + proc.stderr
        self.by_host = {}
        for host in hosts:
            path = '%s-%s.json' % (results_prefix, host)
            if os.path.exists(path):
                with open(path, encoding='utf-8') as handle:
                    self.by_host[host] = json.load(handle)
        self.results = self.by_host.get(hosts[0], {})

    def results_by_host(self, name):
        return {host: results[name] for host, results in self.by_host.items()}

    def __repr__(self):
        return '<PlaybookRun rc=%s>\n%s' % (self.rc, self.output[-6000:])


class PlaybookRunner:
    """Writes a playbook, runs it with ansible-playbook, and collects registered results.

    Tasks that set `register: NAME` with NAME listed in `save` are written, after the play, to a
    JSON file that the test reads back (`run.results[NAME]`).
    """

    def __init__(self, collections, workdir):
        self.collections = collections
        self.workdir = workdir
        self.count = 0

    def env(self, extra=None):
        env = dict(os.environ)
        env.update({
            'ANSIBLE_COLLECTIONS_PATH': self.collections,
            'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
            'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
            'ANSIBLE_FORCE_COLOR': 'false',
            'ANSIBLE_NOCOLOR': 'true',
            'ANSIBLE_RETRY_FILES_ENABLED': 'false',
            'ANSIBLE_HOME': os.path.join(self.workdir, 'ansible-home'),
            'PYTHONUNBUFFERED': '1',
            'PATH': BIN_DIR + os.pathsep + env.get('PATH', ''),
        })
        for name in ('BITBUCKET_CLIENT_ID', 'BITBUCKET_CLIENT_SECRET', 'BITBUCKET_ACCESS_TOKEN',
                     'BITBUCKET_USERNAME', 'BITBUCKET_PASSWORD', 'BITBUCKET_TOKEN_CACHE_DIR',
                     'BITBUCKET_API_URL', 'BITBUCKET_TOKEN_URL'):
            env.pop(name, None)
        env.update(extra or {})
        return env

    def inventory(self, hosts=('localhost',)):
        """An inventory of local-connection hosts (several names for fork tests)."""
        path = os.path.join(self.workdir, 'inventory-%d.ini' % len(hosts))
        with open(path, 'w', encoding='utf-8') as handle:
            for host in hosts:
                handle.write('%s ansible_connection=local ansible_python_interpreter=%s\n' % (host, sys.executable))
        return path

    def command(self, playbook, verbosity=0, check=False, extra_args=(), hosts=('localhost',)):
        argv = [os.path.join(BIN_DIR, 'ansible-playbook'), '-i', self.inventory(hosts), playbook]
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        if check:
            argv.append('--check')
        return argv + list(extra_args)

    def run(self, tasks, save=(), verbosity=0, check=False, env=None, extra_args=(), play_vars=None, timeout=300,
            hosts=('localhost',), forks=5):
        """Run `tasks` (YAML text or a list) in one play on `hosts` (all local)."""
        self.count += 1
        results_prefix = os.path.join(self.workdir, 'results-%d' % self.count)
        if isinstance(tasks, str):
            tasks = yaml.safe_load(textwrap.dedent(tasks))
        # Variables go to a vars file: on a failure Ansible quotes the playbook lines around the task,
        # and those must not hold the secrets the tests pass in.
        vars_file = os.path.join(self.workdir, 'vars-%d.yml' % self.count)
        with open(vars_file, 'w', encoding='utf-8') as handle:
            yaml.safe_dump(play_vars or {}, handle)
        play = {'name': 'test', 'hosts': 'all', 'gather_facts': False, 'vars_files': [vars_file], 'tasks': tasks}
        if save:
            saved = '{{ {%s} | to_json }}' % ', '.join("'%s': (%s | default(None))" % (name, name) for name in save)
            # always: so results of failed tasks (ignore_errors) are saved too; no_log: the file holds tokens.
            play['tasks'] = [{'block': tasks, 'always': [{
                'name': 'Save registered results for the test',
                'ansible.builtin.copy': {'content': saved, 'dest': results_prefix + '-{{ inventory_hostname }}.json', 'mode': '0600'},
                'no_log': True, 'check_mode': False}]}]
        playbook = os.path.join(self.workdir, 'playbook-%d.yml' % self.count)
        with open(playbook, 'w', encoding='utf-8') as handle:
            yaml.safe_dump([play], handle, sort_keys=False)
        argv = self.command(playbook, verbosity, check, list(extra_args) + ['--forks', str(forks)], hosts)
        proc = subprocess.run(argv, env=self.env(env), cwd=self.workdir, capture_output=True, text=True, timeout=timeout, check=False)
        return PlaybookRun(proc, results_prefix, list(hosts))


@pytest.fixture
def playbook(collections_path, tmp_path):
    return PlaybookRunner(collections_path, str(tmp_path))


def _assert_no_secrets(text, secrets):
    """Fail if any of `secrets` (non-empty strings) occurs in `text`; the message never shows the secret."""
    for index, secret in enumerate(s for s in secrets if s):
        assert secret not in text, 'secret #%d (%d characters) leaked into the output' % (index, len(secret))


@pytest.fixture
def assert_no_secrets():
    return _assert_no_secrets
