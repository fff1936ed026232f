"""The collection as AWX/AAP runs it: `ansible-runner run` jobs against the emulator.

Each job gets a private data dir laid out as AWX lays it out: env/envvars holds what the
"Bitbucket OAuth consumer" credential type injects (rendered from extensions/awx/ by
tests/awx_credential.py), env/extravars the job template's extra vars, inventory/ the job's
hosts (one slice of them for a sliced job) and project/ the playbooks. The collection is the
built artifact, installed as an execution environment would have it. Each job has a HOME of its
own, so the default token cache lives and dies with the job, as in an EE container.

Hosts are local-connection inventory entries with their own checkout_root, as in the
integration tests; molecule runs the role on podman hosts.
"""

import glob
import json
import os
import subprocess
import sys

import pytest
import yaml

from awx_credential import injected_env

BIN_DIR = os.path.dirname(sys.executable)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONSUMER = {'key': 'demoKey1234567890ab', 'secret': 'demoSecret+With/Odd=Chars0123456789'}
QUERY = 'project.key = "PROJ"'  # acme/api and acme/web
HOSTS = ['web%d' % number for number in range(1, 7)]
# AWX gives host i of the inventory to slice i modulo the slice count.
SLICES = [HOSTS[index::3] for index in range(3)]

CHECKOUT_PLAYBOOK = [{
    'name': 'Check out the Bitbucket repositories',
    'hosts': 'all',
    # Facts are gathered so that AWX's fact cache has something to scan, without the env subset: on a
    # local-connection host, ansible_env is the job's environment, credential included (see docs/awx.md).
    'gather_facts': True,
    'gather_subset': ['!all', '!env'],
    'roles': [{'role': 'codeferry.bitbucket.checkout'}],
}]
RESOLVE_PLAYBOOK = [{'name': 'Resolve the pins', 'ansible.builtin.import_playbook': 'codeferry.bitbucket.resolve'}]


@pytest.fixture(scope='module')
def installed_collection(tmp_path_factory):
    """The collection as `ansible-galaxy collection build` ships it, installed into a collections path."""
    root = tmp_path_factory.mktemp('built')
    subprocess.run([os.path.join(BIN_DIR, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(root), REPO_ROOT],
                   check=True, capture_output=True, text=True)
    (artifact,) = glob.glob(str(root / '*.tar.gz'))
    collections = root / 'collections'
    subprocess.run([os.path.join(BIN_DIR, 'ansible-galaxy'), 'collection', 'install', '--offline', '-p', str(collections),
                    artifact], env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections)),
                   check=True, capture_output=True, text=True)
    return str(collections)


class Job:
    """One finished ansible-runner job: its artifacts, events and the emulator's request counts."""

    def __init__(self, pdd, ident, proc, requests):
        self.pdd = pdd
        self.ident = ident
        self.proc = proc
        self.requests = requests
        self.artifacts = os.path.join(pdd, 'artifacts', ident)
        self.events = []
        for path in glob.glob(os.path.join(self.artifacts, 'job_events', '*.json')):
            with open(path, encoding='utf-8') as handle:
                self.events.append(json.load(handle))
        self.events.sort(key=lambda event: event['counter'])

    @property
    def status(self):
        with open(os.path.join(self.artifacts, 'status'), encoding='utf-8') as handle:
            return handle.read().strip()

    @property
    def stats(self):
        (stats,) = [event['event_data'] for event in self.events if event['event'] == 'playbook_on_stats']
        return stats

    def __repr__(self):
        return '<Job %s %s>\n%s' % (self.ident, self.requests, (self.proc.stdout + self.proc.stderr)[-6000:])


class Site:
    """What AWX would hold for these tests: the credential, the job template's extra vars, the inventory."""

    def __init__(self, emulator, collections, root):
        self.emulator = emulator
        self.collections = collections
        self.root = root
        self.jobs = 0

    def credential_env(self, **inputs):
        inputs = dict({'client_id': CONSUMER['key'], 'client_secret': CONSUMER['secret'],
                       'api_url': self.emulator.api_url, 'token_url': self.emulator.token_url}, **inputs)
        return injected_env(inputs)

    def extravars(self, **extra):
        data = {'checkout_workspace': 'acme', 'checkout_query': QUERY, 'checkout_git_url': self.emulator.git_url,
                'checkout_ca_path': self.emulator.ca_file,
                'checkout_host_ca_path': os.path.join(self.root, 'host-ca', 'ca.pem')}
        data.update(extra)
        return data

    def run(self, playbook, hosts, extravars, envvars):
        """A new private data dir, one `ansible-runner run` in it; returns the Job."""
        self.jobs += 1
        ident = 'job%d' % self.jobs
        pdd = os.path.join(self.root, 'pdd-' + ident)
        for part in ('env', 'inventory', 'project', 'home'):
            os.makedirs(os.path.join(pdd, part))
        env = dict(envvars, HOME=os.path.join(pdd, 'home'), ANSIBLE_COLLECTIONS_PATH=self.collections,
                   ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_LOCALHOST_WARNING='false')
        write_yaml(os.path.join(pdd, 'env', 'envvars'), env)
        write_yaml(os.path.join(pdd, 'env', 'extravars'), extravars)
        write_yaml(os.path.join(pdd, 'project', 'job.yml'), playbook)
        with open(os.path.join(pdd, 'inventory', 'hosts'), 'w', encoding='utf-8') as handle:
            for host in hosts:
                handle.write('%s ansible_connection=local ansible_python_interpreter=%s checkout_root=%s\n'
                             % (host, sys.executable, os.path.join(self.root, 'hosts', host)))
        process_env = {name: value for name, value in os.environ.items() if not name.startswith(('BITBUCKET_', 'ANSIBLE_'))}
        process_env['PATH'] = BIN_DIR + os.pathsep + process_env.get('PATH', '')
        self.emulator.reset()
        proc = subprocess.run([os.path.join(BIN_DIR, 'ansible-runner'), 'run', pdd, '-p', 'job.yml', '--ident', ident],
                              env=process_env, capture_output=True, text=True, timeout=600, check=False)
        job = Job(pdd, ident, proc, self.emulator.stats()['requests'])
        # The per-job figures, shown with -s or beside a failure.
        print('%s %s: %d hosts, requests %s, changed %s' % (ident, playbook[0]['name'], len(hosts), job.requests,
                                                            job.stats.get('changed') if job.events else None))
        return job

    def secrets(self):
        return self.emulator.stats()['tokens'] + [CONSUMER['secret']]


def write_yaml(path, data):
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(data, handle)


def head(site, host, slug):
    return subprocess.run(['git', '-C', os.path.join(site.root, 'hosts', host, slug), 'rev-parse', 'HEAD'],
                          check=True, capture_output=True, text=True).stdout.strip()


def upstream(emulator, slug):
    """The main branch of acme/<slug>, read from the emulator's bare repository (no request is counted)."""
    return subprocess.run(['git', '--git-dir', os.path.join(emulator.state_dir, 'repos', 'acme', slug + '.git'),
                           'rev-parse', 'refs/heads/main'], check=True, capture_output=True, text=True).stdout.strip()


def assert_nothing_leaked(job, secrets, facts=True):
    """No secret in the runner's output, nor in any file the job wrote (events, fact cache, artifacts).

    ansible-runner itself records the environment it started the job with in artifacts/<ident>/command,
    which holds the injected credential; that record is checked to hold the secrets only there (which
    also shows that the scan finds them), and everything else in it is scanned like the rest.
    """
    scanned = {'stdout': job.proc.stdout + job.proc.stderr}
    for directory, dummy, files in os.walk(job.artifacts):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, encoding='utf-8', errors='replace') as handle:
                scanned[os.path.relpath(path, job.pdd)] = handle.read()
    command = json.loads(scanned.pop(os.path.join('artifacts', job.ident, 'command')))
    assert CONSUMER['secret'] in json.dumps(command.pop('env')), 'the scan would not find the client secret'
    scanned['command'] = json.dumps(command)
    assert any(name.startswith(os.path.join('artifacts', job.ident, 'job_events')) for name in scanned)
    # A job that gathers facts has them in the fact cache, which AWX keeps per host.
    assert facts == any(name.startswith(os.path.join('artifacts', job.ident, 'fact_cache')) for name in scanned), sorted(scanned)
    for index, secret in enumerate(secrets):
        leaked = sorted(name for name, text in scanned.items() if secret in text)
        assert leaked == [], 'secret #%d (%d characters) is in %s' % (index, len(secret), leaked)
    print('%s: %d secrets, none in %d outputs and files' % (job.ident, len(secrets), len(scanned)))


@pytest.fixture
def site(make_emulator, installed_collection, tmp_path):
    return Site(make_emulator(), installed_collection, str(tmp_path))


def test_fleet_checkout_with_the_injected_credential(site):
    """The role reads the credential type's environment variables: no credential in any playbook or extra var."""
    env = site.credential_env()
    assert set(env) >= {'BITBUCKET_CLIENT_ID', 'BITBUCKET_CLIENT_SECRET', 'BITBUCKET_API_URL', 'BITBUCKET_TOKEN_URL'}
    cold = site.run(CHECKOUT_PLAYBOOK, HOSTS, site.extravars(), env)
    assert cold.status == 'successful', cold
    assert cold.requests['token'] == 1, cold.requests
    assert cold.requests['git'] > 0
    assert all(cold.stats['changed'].get(host) for host in HOSTS), cold.stats['changed']
    for host in HOSTS:
        for slug in ('api', 'web'):
            assert head(site, host, slug) == upstream(site.emulator, slug)
    assert_nothing_leaked(cold, site.secrets())

    # The next job runs in a new container: its token cache is gone, so it mints one token, and no more.
    warm = site.run(CHECKOUT_PLAYBOOK, HOSTS, site.extravars(), env)
    assert warm.status == 'successful', warm
    assert warm.requests['token'] == 1 and warm.requests['git'] == 0, warm.requests
    assert warm.stats['changed'] == {}, warm.stats['changed']
    assert sorted(warm.stats['ok']) == HOSTS
    assert_nothing_leaked(warm, site.secrets())


def test_resolve_then_three_slices_all_on_the_first_resolved_commits(site):
    """resolve.yml pins the fleet once; slices run later, one after a push, and still deploy the pins."""
    cache = os.path.join(site.root, 'token-volume')
    # The token cache on a volume that every job of the workflow mounts: one token for all four jobs.
    env = dict(site.credential_env(), BITBUCKET_TOKEN_CACHE_DIR=cache)
    resolve = site.run(RESOLVE_PLAYBOOK, ['localhost'], site.extravars(), env)
    assert resolve.status == 'successful', resolve
    assert resolve.requests['token'] == 1 and resolve.requests['git'] == 0, resolve.requests
    assert resolve.requests['api'] > 0
    # As AWX does: the pins are the artifact_data of the job's playbook_on_stats event.
    pins = resolve.stats['artifact_data']['checkout_pins']
    first = {'api': upstream(site.emulator, 'api'), 'web': upstream(site.emulator, 'web')}
    assert sorted((pin['repository'], pin['version'], pin['commit']) for pin in pins) == [
        ('acme/api', 'main', first['api']), ('acme/web', 'main', first['web'])]
    assert_nothing_leaked(resolve, site.secrets(), facts=False)

    # The workflow passes the artifacts on as extra vars of the next node.
    extravars = site.extravars(checkout_pins=pins)
    jobs = []
    for number, hosts in enumerate(SLICES, start=1):
        if number == 2:
            pushed = site.emulator.commit('acme/api', {'between-slices.txt': 'pushed after slice 1\n'})
            assert pushed != first['api'] and upstream(site.emulator, 'api') == pushed
        job = site.run(CHECKOUT_PLAYBOOK, hosts, extravars, env)
        assert job.status == 'successful', job
        # No ref lookup and no listing: the pins say it all. The token comes from the volume.
        assert job.requests['api'] == 0 and job.requests['token'] == 0, job.requests
        assert job.requests['git'] > 0
        assert sorted(job.stats['changed']) == sorted(hosts)
        assert_nothing_leaked(job, site.secrets())
        jobs.append(job)
    for host in HOSTS:
        for slug in ('api', 'web'):
            assert head(site, host, slug) == first[slug], (host, slug)

    # A rerun of a slice after the push: nothing to do, still no API request.
    again = site.run(CHECKOUT_PLAYBOOK, SLICES[0], extravars, env)
    assert again.status == 'successful', again
    assert again.requests == dict(again.requests, api=0, token=0, git=0), again.requests
    assert again.stats['changed'] == {}


@pytest.mark.parametrize('pin, message', [
    ({'repository': 'acme/api', 'version': 'main'}, 'missing required arguments: commit found in checkout_pins'),
    ({'repository': 'acme/api', 'commit': 'main'}, 'Each of checkout_pins needs a repository (workspace/slug) and its commit'),
    ({'repository': 'acme/..', 'commit': 'a' * 40}, 'Each of checkout_pins needs a repository (workspace/slug) and its commit'),
])
def test_bad_pins_are_refused_before_any_request(site, pin, message):
    job = site.run(CHECKOUT_PLAYBOOK, SLICES[0], site.extravars(checkout_pins=[pin]), site.credential_env())
    assert job.status == 'failed', job
    assert sum(job.requests.values()) == 0, job.requests
    assert message in job.proc.stdout, job
