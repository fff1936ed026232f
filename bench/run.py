# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench`: the checkout role and repository_info against two ansible.builtin baselines.

Every scenario runs real ansible-playbook runs against the Bitbucket emulator at 50 ms latency per
request, onto local "hosts" (localhost entries, each with a root of its own). Contenders:
collection (bench/collection/), collection_controller (the same playbook with checkout_transport
controller, in the fleet scenarios only), seed_recipe and builtin_careful (bench/baselines/). For each
scenario and contender it records the emulator's request counters, the median wall time of
RUNS runs, the changed tasks and the tokens found in .git/config files and in the output, writes
bench/results.json, and prints a table and the collection's targets (PASS, MISS, or "not run").
Exit status 0 even with a MISS; non-zero when a playbook run itself fails.

Knobs for quick trials: BENCH_RUNS, BENCH_SCALE_HOSTS (comma-separated H), and BENCH_SCENARIOS and
BENCH_CONTENDERS (comma-separated names; every one by default).
"""

import base64
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import requests

from bitbucket_emulator.testing import Emulator, load_demo_data

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
BIN_DIR = os.path.dirname(sys.executable)
RESULTS = os.path.join(BENCH_DIR, 'results.json')

LATENCY_MS = 50
FORKS = 50
FLEET_HOSTS = 10
# The figures by default; BENCH_RUNS and BENCH_SCALE_HOSTS (comma-separated) are for quick trials.
RUNS = int(os.environ.get('BENCH_RUNS', '3'))
# To keep `make bench` under 20 minutes on two cores, a contender whose first run takes longer than this
# is measured once (meta.runs says how often each one ran).
ONE_RUN_OVER_S = float(os.environ.get('BENCH_ONE_RUN_OVER_S', '15'))
SCALE_HOSTS = tuple(int(hosts) for hosts in os.environ.get('BENCH_SCALE_HOSTS', '10,50,200').split(','))
LIST_SIZE = 1000
PAGELEN = 100
CLIENT_ID = 'demoKey1234567890ab'
CLIENT_SECRET = 'demoSecret+With/Odd=Chars0123456789'
# Five repositories of the bundled acme workspace whose main branch is `main` (the seed recipe's version).
REPOSITORIES = ('acme/api', 'acme/web', 'acme/infra', 'acme/svc-001', 'acme/svc-002')
CONTENDERS = ('collection', 'collection_controller', 'seed_recipe', 'builtin_careful')
# The listing does not depend on the transport; the warm runs at scale pit the collection against the careful baseline.
LIST_CONTENDERS = ('collection', 'seed_recipe', 'builtin_careful')
SCALE_CONTENDERS = ('collection', 'collection_controller', 'builtin_careful')
FLEET_SCENARIOS = ('fleet_cold', 'fleet_warm', 'token_expired')
SCALE_SCENARIOS = tuple('fleet_scale_%d' % hosts for hosts in SCALE_HOSTS)
SCENARIOS = FLEET_SCENARIOS + ('list_1000',) + SCALE_SCENARIOS
PLAYBOOKS = {
    'collection': os.path.join(BENCH_DIR, 'collection'),
    'collection_controller': os.path.join(BENCH_DIR, 'collection'),
    'seed_recipe': os.path.join(BENCH_DIR, 'baselines', 'seed_recipe'),
    'builtin_careful': os.path.join(BENCH_DIR, 'baselines', 'builtin_careful'),
}
# What sets a contender apart from another one that shares its playbooks (bench_transport is direct otherwise).
CONTENDER_VARS = {'collection_controller': {'bench_transport': 'controller'}}
# collection_controller's target: the ref advertisement and the pack, once per repository and run, whatever H.
CONTROLLER_GIT_PER_REPOSITORY = 2
# git_checkout's credential store (credential_mode store): the one place a token may stay on a host.
CREDENTIAL_STORE = os.path.join('.git', 'codeferry-credentials')
RECAP = re.compile(r'^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.MULTILINE)


class BenchError(RuntimeError):
    """A playbook run failed: the benchmark has no figure to report."""


def progress(text):
    """One progress line on stderr."""
    print('[bench %s] %s' % (time.strftime('%H:%M:%S'), text), file=sys.stderr, flush=True)


def selection(variable, known):
    """The names of the comma-separated environment variable, in the order of known; all of known when it is unset."""
    value = os.environ.get(variable, '').strip()
    if not value:
        return known
    names = [name.strip() for name in value.split(',') if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchError('%s: unknown %s; choose among %s' % (variable, ', '.join(unknown), ', '.join(known)))
    return tuple(name for name in known if name in names)


def emulator_data():
    """The bundled demo data, plus a workspace of LIST_SIZE repositories and one of a single repository."""
    data = load_demo_data()
    data['workspaces'].append({'slug': 'bulk', 'name': 'Bulk', 'members': ['alice'], 'repositories': [],
                               'generate_repositories': {'count': LIST_SIZE, 'prefix': 'bulk-', 'project': 'GEN'}})
    data['workspaces'].append({'slug': 'single', 'name': 'Single', 'members': ['alice'],
                               'repositories': [{'slug': 'only', 'project': 'PROJ', 'branches': ['main']}]})
    return data


class Bench:
    """The work directory, the emulator and the ansible-playbook environment shared by every run."""

    def __init__(self, work, emu, scenarios, contenders):
        self.work = work
        self.emu = emu
        self.scenarios = scenarios
        self.contenders = contenders
        self.meta_notes = []
        self.runs = {}
        self.warm_fleets = {}
        collections = os.path.join(work, 'collections')
        os.makedirs(os.path.join(collections, 'ansible_collections', 'codeferry'))
        os.symlink(REPO_ROOT, os.path.join(collections, 'ansible_collections', 'codeferry', 'bitbucket'))
        # The same environment for every contender and scenario.
        self.env = dict(os.environ)
        for name in ('GIT_SSL_CAINFO', 'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE', 'ANSIBLE_CONFIG'):
            self.env.pop(name, None)
        self.env.update({
            'ANSIBLE_COLLECTIONS_PATH': collections,
            'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
            'ANSIBLE_HOME': os.path.join(work, 'ansible-home'),
            'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
            'ANSIBLE_NOCOLOR': 'true',
            'ANSIBLE_PIPELINING': 'true',
            'ANSIBLE_FORKS': str(FORKS),
            'ANSIBLE_RETRY_FILES_ENABLED': 'false',
            'BITBUCKET_CLIENT_ID': CLIENT_ID,
            'BITBUCKET_CLIENT_SECRET': CLIENT_SECRET,
            'PATH': BIN_DIR + os.pathsep + self.env.get('PATH', ''),
        })
        git_url = emu.git_url
        self.common_vars = {
            'bench_api_url': emu.api_url, 'bench_token_url': emu.token_url, 'bench_git_url': git_url,
            'bench_git_host': urllib.parse.urlsplit(git_url).netloc, 'bench_ca_path': emu.ca_file,
            'bench_repositories': [{'repository': name, 'version': 'main'} for name in REPOSITORIES],
            'bench_transport': 'direct',
        }

    def wanted(self, contenders):
        """The selected contenders among these."""
        return [contender for contender in contenders if contender in self.contenders]

    def fleet(self, name, hosts):
        """A fresh inventory of `hosts` local hosts, each with its own root under work/name/hosts."""
        root = os.path.join(self.work, name)
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        inventory = os.path.join(root, 'inventory.ini')
        roots = []
        with open(inventory, 'w', encoding='utf-8') as handle:
            handle.write('[bench]\n')
            for number in range(1, hosts + 1):
                host = 'h%03d' % number
                home = os.path.join(root, 'hosts', host)
                roots.append(home)
                handle.write('%s ansible_connection=local bench_root=%s checkout_host_ca_path=%s\n'
                             % (host, os.path.join(home, 'srv'), os.path.join(home, 'etc', 'ca.pem')))
            handle.write('\n[bench:vars]\nansible_python_interpreter=%s\n' % sys.executable)
        return Fleet(name, root, inventory, roots)

    def play(self, playbook, fleet, extra):
        """Run ansible-playbook once; returns (wall seconds, stdout + stderr, changed), raises BenchError on failure."""
        variables = dict(self.common_vars, bench_token_cache_dir=os.path.join(fleet.root, 'token-cache'),
                         bench_mirror_dir=fleet.mirrors, **extra)
        extra_vars = os.path.join(fleet.root, 'vars.json')
        with open(extra_vars, 'w', encoding='utf-8') as handle:
            json.dump(variables, handle)
        command = [os.path.join(BIN_DIR, 'ansible-playbook'), '-i', fleet.inventory, playbook, '-e', '@' + extra_vars]
        start = time.perf_counter()
        proc = subprocess.run(command, env=self.env, cwd=fleet.root, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            log = os.path.join(self.work, 'failed-run.log')
            with open(log, 'w', encoding='utf-8') as handle:
                handle.write(output)
            raise BenchError('%s on %s failed with exit code %d; its output is in %s'
                             % (os.path.relpath(playbook, REPO_ROOT), fleet.name, proc.returncode, log))
        changed = sum(int(match.group(2)) for match in RECAP.finditer(proc.stdout))
        return wall, output, changed


class Fleet:
    """An inventory and the hosts' roots."""

    def __init__(self, name, root, inventory, roots):
        self.name = name
        self.root = root
        self.inventory = inventory
        self.roots = roots
        # collection_controller's bare mirrors: the controller's git state, as cold or warm as the hosts'.
        self.mirrors = os.path.join(root, 'mirrors')

    def wipe(self):
        """Remove every host's files, the controller's token cache and mirrors: the next run is cold."""
        for home in self.roots:
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(os.path.join(self.root, 'token-cache'), ignore_errors=True)
        shutil.rmtree(self.mirrors, ignore_errors=True)


def token_forms(tokens):
    """Every form in which a token may leak: as is, percent-encoded (a URL) and as an x-token-auth Basic credential."""
    forms = set()
    for token in tokens:
        forms.add(token)
        forms.add(urllib.parse.quote(token, safe=''))
        forms.add(base64.b64encode(('x-token-auth:' + token).encode()).decode())
    return re.compile('|'.join(re.escape(form) for form in sorted(forms, key=len, reverse=True)).encode())


def count_in_files(pattern, paths):
    """Occurrences of the pattern in these files."""
    total = 0
    for path in paths:
        try:
            with open(path, 'rb') as handle:
                total += len(pattern.findall(handle.read()))
        except OSError:
            continue
    return total


def files_under(roots, keep):
    """Every regular file under the roots for which keep(path) is true."""
    for root in roots:
        for directory, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                if os.path.isfile(path) and not os.path.islink(path) and keep(path):
                    yield path


def token_leaks(pattern, fleet, output):
    """Tokens in every host's .git/config files plus in the playbook's output."""
    configs = files_under(fleet.roots, lambda path: path.endswith(os.path.join('.git', 'config')))
    return count_in_files(pattern, configs) + len(pattern.findall(output.encode()))


def tokens_on_disk(pattern, fleet):
    """Tokens in any file under the hosts' roots and the mirrors other than git_checkout's credential store files."""
    return count_in_files(pattern, files_under(fleet.roots + [fleet.mirrors], lambda path: not path.endswith(CREDENTIAL_STORE)))


def measure(bench, scenario, contender, playbook, fleet, extra=None, before_run=None, runs=RUNS):
    """Run a playbook `runs` times; the figures of the median run (by wall time) and every run's requests."""
    extra = dict(CONTENDER_VARS.get(contender, {}), **(extra or {}))
    samples = []
    for number in range(1, runs + 1):
        if samples and samples[0]['wall_s'] > ONE_RUN_OVER_S:
            break
        if before_run is not None:
            before_run()
        bench.emu.reset()
        wall, output, changed = bench.play(playbook, fleet, extra)
        stats = bench.emu.stats()
        pattern = token_forms(stats['tokens'])
        samples.append({'requests': stats['requests'], 'wall_s': round(wall, 3), 'changed': changed,
                        'token_leaks': token_leaks(pattern, fleet, output), 'pattern': pattern})
        progress('%s %s run %d/%d: %.1f s  %s  changed=%d'
                 % (scenario, contender, number, runs, wall, format_requests(stats['requests']), changed))
    median = sorted(samples, key=lambda sample: sample['wall_s'])[len(samples) // 2]
    distinct = {json.dumps(sample['requests'], sort_keys=True) for sample in samples}
    if len(distinct) > 1:
        bench.meta_notes.append('%s/%s: requests differ between runs: %s' % (scenario, contender, '; '.join(sorted(distinct))))
    result = {key: median[key] for key in ('requests', 'wall_s', 'changed', 'token_leaks')}
    result['wall_s'] = round(statistics.median(sample['wall_s'] for sample in samples), 3)
    bench.runs.setdefault(scenario, {})[contender] = len(samples)
    return result, median['pattern']


def format_requests(requests_by_class):
    """token=1 api=15 git=0 archive=0"""
    return ' '.join('%s=%d' % (name, requests_by_class[name]) for name in ('token', 'api', 'git', 'archive'))


def setup_run(bench, scenario, contender, playbook, fleet):
    """The untimed cold run that sets up a warm state; returns its requests (the cold figures at this H)."""
    fleet.wipe()
    bench.emu.reset()
    wall, _output, changed = bench.play(playbook, fleet, dict(CONTENDER_VARS.get(contender, {})))
    stats = bench.emu.stats()
    progress('%s %s cold set-up run (untimed): %.1f s  %s  changed=%d'
             % (scenario, contender, wall, format_requests(stats['requests']), changed))
    return {'requests': stats['requests'], 'wall_s': round(wall, 3), 'changed': changed}


def fleet_scenarios(bench, results, meta):
    """fleet_cold, fleet_warm and token_expired on FLEET_HOSTS hosts (those of them selected)."""
    wanted = [scenario for scenario in FLEET_SCENARIOS if scenario in bench.scenarios]
    if not wanted:
        return
    for contender in bench.contenders:
        playbook = os.path.join(PLAYBOOKS[contender], 'fleet.yml')
        fleet = bench.fleet('fleet-%s' % contender, FLEET_HOSTS)
        # The last cold run leaves the state the warm runs start from: checkouts on the hosts and, for
        # collection_controller, mirrors on the controller. Without fleet_cold, an untimed cold run does.
        if 'fleet_cold' not in wanted:
            meta['cold_setup_runs'].setdefault(wanted[0], {})[contender] = setup_run(bench, wanted[0], contender, playbook, fleet)
        disk = {}
        for scenario, before_run in (('fleet_cold', fleet.wipe), ('fleet_warm', None), ('token_expired', bench.emu.expire)):
            if scenario in wanted:
                figures, pattern = measure(bench, scenario, contender, playbook, fleet, before_run=before_run)
                results[scenario][contender] = figures
                disk[scenario] = tokens_on_disk(pattern, fleet)
        meta['tokens_on_disk_outside_store'][contender] = disk
        bench.warm_fleets[contender] = fleet


def copy_warm_state(source, fleet):
    """Give every host of fleet the checkouts of source's first host (builtin git keeps no host path in them)."""
    for home in fleet.roots:
        shutil.copytree(os.path.join(source.roots[0], 'srv'), os.path.join(home, 'srv'), symlinks=True)


def scale_scenarios(bench, results, meta):
    """fleet_scale_H: warm runs at each H, collection, collection_controller and builtin_careful.

    At H = FLEET_HOSTS this is the fleet_warm measurement (same hosts, forks and state), reused when it ran. For
    builtin_careful the warm state is a copy of a fleet_warm host's checkouts (untimed); the collection's
    checkouts hold host paths (the credential store), and collection_controller's warm state includes its
    mirrors, so each of them gets a cold run, which is also its cold figure at H.
    """
    for hosts in SCALE_HOSTS:
        scenario = 'fleet_scale_%d' % hosts
        if scenario not in bench.scenarios:
            continue
        contenders = bench.wanted(SCALE_CONTENDERS)
        reused = [contender for contender in contenders if hosts == FLEET_HOSTS and contender in results.get('fleet_warm', {})]
        for contender in reused:
            results[scenario][contender] = dict(results['fleet_warm'][contender])
            bench.runs.setdefault(scenario, {})[contender] = bench.runs['fleet_warm'][contender]
        if reused:
            bench.meta_notes.append('%s: the fleet_warm figures of %s (the same %d hosts, forks and state)'
                                    % (scenario, ', '.join(reused), hosts))
        for contender in contenders:
            if contender in reused:
                continue
            playbook = os.path.join(PLAYBOOKS[contender], 'fleet.yml')
            fleet = bench.fleet('scale-%d-%s' % (hosts, contender), hosts)
            if contender == 'builtin_careful' and contender in bench.warm_fleets:
                copy_warm_state(bench.warm_fleets[contender], fleet)
                meta['cold_setup_runs'].setdefault(scenario, {})[contender] = 'copied from a fleet_warm host (untimed)'
            else:
                meta['cold_setup_runs'].setdefault(scenario, {})[contender] = setup_run(bench, scenario, contender, playbook, fleet)
            figures, pattern = measure(bench, scenario, contender, playbook, fleet)
            results[scenario][contender] = figures
            meta['tokens_on_disk_outside_store'].setdefault(contender, {})[scenario] = tokens_on_disk(pattern, fleet)
            shutil.rmtree(fleet.root, ignore_errors=True)


def list_scenario(bench, results, meta):
    """list_1000 for every contender, from an empty token cache each run; and the one-repository reference."""
    if 'list_1000' not in bench.scenarios:
        return
    fleet = bench.fleet('list', 1)
    for contender in bench.wanted(LIST_CONTENDERS):
        playbook = os.path.join(PLAYBOOKS[contender], 'list.yml')
        figures, _pattern = measure(bench, 'list_1000', contender, playbook, fleet,
                                    extra={'bench_workspace': 'bulk', 'bench_expect': LIST_SIZE}, before_run=fleet.wipe)
        results['list_1000'][contender] = figures
    if 'collection' not in bench.contenders:
        return
    # The overhead allowed: the same playbook listing a workspace of one repository (one page, one API
    # request at 50 ms), less that request's 50 ms: start-up, token, TLS and module start.
    figures, _pattern = measure(bench, 'list_reference_1_repository', 'collection', os.path.join(PLAYBOOKS['collection'], 'list.yml'),
                                fleet, extra={'bench_workspace': 'single', 'bench_expect': 1}, before_run=fleet.wipe)
    meta['list_reference'] = figures
    meta['listing_in_process'] = listing_in_process(bench.emu)


def listing_in_process(emu):
    """repository_info's code path without Ansible: BitbucketClient.paginate over the bulk workspace, 8 and 1 workers."""
    collections = os.path.join(os.path.dirname(emu.state_dir), 'collections')
    if collections not in sys.path:
        sys.path.insert(0, collections)
    # pylint: disable=import-outside-toplevel
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient, MAX_PARALLEL_PAGES
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import PluginHttp
    session = requests.Session()
    session.trust_env = False
    response = session.post(emu.token_url, data={'grant_type': 'client_credentials'}, auth=(CLIENT_ID, CLIENT_SECRET),
                            verify=emu.ca_file, timeout=30)
    response.raise_for_status()
    auth = AccessTokenAuth(response.json()['access_token'])
    figures = {}
    for workers in (MAX_PARALLEL_PAGES, 1):
        client = BitbucketClient(PluginHttp(ca_path=emu.ca_file), emu.api_url, auth, max_workers=workers)
        samples = []
        for _run in range(RUNS):
            start = time.perf_counter()
            found = list(client.paginate('repositories', 'bulk'))
            samples.append(time.perf_counter() - start)
            if len(found) != LIST_SIZE:
                raise BenchError('paginate listed %d repositories, expected %d' % (len(found), LIST_SIZE))
        figures['workers_%d_s' % workers] = round(statistics.median(samples), 3)
    start = time.perf_counter()
    client.get('repositories', 'single', 'only')
    figures['one_api_request_s'] = round(time.perf_counter() - start, 3)
    progress('list_1000 in-process paginate: %s' % figures)
    return figures


def verdict(passed, figure):
    """PASS or MISS with the figure."""
    return ('PASS' if passed else 'MISS', figure)


def figures_of(results, contender, scenarios, value):
    """(scenario, value(figures)) for each of the scenarios in which contender ran."""
    return [(name, value(results[name][contender])) for name in scenarios if contender in results.get(name, {})]


def cold_setups(meta, contender, value):
    """('<scenario> cold set-up', value(figures)) for each cold set-up run of contender."""
    return [('%s cold set-up' % scenario, value(runs[contender])) for scenario, runs in meta['cold_setup_runs'].items()
            if isinstance(runs.get(contender), dict)]


def target_row(target, found, passed, form='%s: %d'):
    """(target, PASS or MISS, figure) over found, a list of (name, figure); 'not run' when it is empty."""
    if not found:
        return (target, 'not run', '-')
    return (target,) + verdict(all(passed(figure) for _name, figure in found), ', '.join(form % pair for pair in found))


def requests_of(kind):
    """The figures' count of requests of this kind."""
    return lambda figures: figures['requests'][kind]


def targets(results, meta):
    """The targets from the README, each (target, PASS, MISS or 'not run', figure): the collection's, then collection_controller's."""
    token, git = requests_of('token'), requests_of('git')
    warm = ('fleet_warm',) + SCALE_SCENARIOS
    colds = [('fleet_cold H=%d' % FLEET_HOSTS, count) for _name, count in figures_of(results, 'collection', ['fleet_cold'], token)]
    colds += cold_setups(meta, 'collection', token)
    rows = [target_row('token requests per play, cold: 1 at any H', colds, lambda count: count == 1)]
    rows.append(target_row('token requests per play, warm: 0 at any H', figures_of(results, 'collection', warm, token),
                           lambda count: count == 0))
    rows += list_targets(results, meta)
    rows.append(target_row('warm re-run: changed=0', figures_of(results, 'collection', warm, lambda figures: figures['changed']),
                           lambda count: count == 0))
    rows.append(target_row('warm re-run: 0 git requests', figures_of(results, 'collection', warm, git), lambda count: count == 0))
    rows.append(target_row('warm re-run: at most 1 API request per repository (%d), any H' % len(REPOSITORIES),
                           figures_of(results, 'collection', warm, requests_of('api')), lambda count: count <= len(REPOSITORIES)))
    ratios = [(name, contenders['builtin_careful']['wall_s'] / contenders['collection']['wall_s'])
              for name, contenders in ((name, results.get(name, {})) for name in warm)
              if 'builtin_careful' in contenders and 'collection' in contenders]
    rows.append(target_row('warm wall time at least 2x faster than builtin_careful, every H', ratios,
                           lambda ratio: ratio >= 2.0, form='%s: %.2fx'))
    disk = meta['tokens_on_disk_outside_store']
    rows.append(target_row('tokens on disk outside the credential store: 0', sorted(disk.get('collection', {}).items()),
                           lambda count: count == 0))
    # collection_controller: the mirrors are fetched at most once per run, the hosts never talk to Bitbucket.
    controller = 'collection_controller'
    most = CONTROLLER_GIT_PER_REPOSITORY * len(REPOSITORIES)
    runs = figures_of(results, controller, FLEET_SCENARIOS + SCALE_SCENARIOS, git) + cold_setups(meta, controller, git)
    rows.append(target_row('%s: git requests per run at most %d per repository (%d), any H'
                           % (controller, CONTROLLER_GIT_PER_REPOSITORY, most), runs, lambda count: count <= most))
    rows.append(target_row('%s warm re-run: 0 git requests' % controller, figures_of(results, controller, warm, git),
                           lambda count: count == 0))
    rows.append(target_row('%s: tokens leaked 0' % controller, figures_of(
        results, controller, FLEET_SCENARIOS + SCALE_SCENARIOS, lambda figures: figures['token_leaks']), lambda count: count == 0))
    rows.append(target_row('%s: tokens on disk (hosts and mirrors) outside the credential store: 0' % controller,
                           sorted(disk.get(controller, {}).items()), lambda count: count == 0))
    return rows


def list_targets(results, meta):
    """The two targets of list_1000: API requests and wall time."""
    names = ('API requests to list M repositories: ceil(M/100)', 'list 1,000 in under 3 x 50 ms + overhead')
    if 'collection' not in results.get('list_1000', {}) or 'list_reference' not in meta:
        return [(name, 'not run', '-') for name in names]
    coll = results['list_1000']['collection']
    expected_pages = int(math.ceil(LIST_SIZE / float(PAGELEN)))
    listed = coll['requests']['api']
    reference = meta['list_reference']
    rows = [(names[0],) + verdict(
        listed == expected_pages and reference['requests']['api'] == 1,
        'M=%d: %d (want %d); M=1: %d (want 1)' % (LIST_SIZE, listed, expected_pages, reference['requests']['api']))]
    overhead = reference['wall_s'] - LATENCY_MS / 1000.0
    limit = 3 * LATENCY_MS / 1000.0 + overhead
    rows.append((names[1],) + verdict(
        coll['wall_s'] < limit,
        '%.3f s vs limit %.3f s (overhead %.3f s = the 1-repository listing playbook %.3f s - 50 ms; in-process paginate %.3f s)'
        % (coll['wall_s'], limit, overhead, reference['wall_s'], meta['listing_in_process']['workers_8_s'])))
    return rows


def markdown(header, rows):
    """A markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(' --- ' for _column in header) + '|']
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return '\n'.join(lines)


def report(results, target_rows, runs):
    """The two tables, as printed at the end."""
    rows = []
    for scenario, contenders in results.items():
        for contender, figures in contenders.items():
            req = figures['requests']
            rows.append((scenario, contender, req['token'], req['api'], req['git'], req['archive'],
                         '%.2f' % figures['wall_s'], runs.get(scenario, {}).get(contender, '-'), figures['changed'],
                         figures['token_leaks']))
    header = ('scenario', 'contender', 'token', 'api', 'git', 'archive', 'wall_s', 'runs', 'changed', 'token_leaks')
    return (markdown(header, rows) + '\n\nTargets of the collection:\n\n'
            + markdown(('target', 'result', 'figure'), target_rows))


def main():
    """Run every selected scenario; write bench/results.json and print the tables."""
    started = time.perf_counter()
    try:
        scenarios = selection('BENCH_SCENARIOS', SCENARIOS)
        contenders = selection('BENCH_CONTENDERS', CONTENDERS)
    except BenchError as error:
        print('bench: %s' % error, file=sys.stderr)
        return 2
    results = {'scenarios': {name: {} for name in scenarios}}
    meta = {'latency_ms': LATENCY_MS, 'runs_wanted': RUNS, 'one_run_over_s': ONE_RUN_OVER_S, 'forks': FORKS,
            'hosts': FLEET_HOSTS, 'scale_hosts': list(SCALE_HOSTS), 'scenarios': list(scenarios),
            'contenders': list(contenders), 'contender_vars': CONTENDER_VARS,
            'repositories': list(REPOSITORIES),
            'list_size': LIST_SIZE, 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'ansible_core': subprocess.run([os.path.join(BIN_DIR, 'ansible'), '--version'], capture_output=True, text=True,
                                           check=False).stdout.split('\n', 1)[0],
            'git': subprocess.run(['git', '--version'], capture_output=True, text=True, check=False).stdout.strip(),
            'wall_s': 'median of the runs (meta.runs: how many); requests, changed and token_leaks from the median run',
            'tokens_on_disk_outside_store': {}, 'cold_setup_runs': {}}
    work = tempfile.mkdtemp(prefix='codeferry-bench-')
    try:
        with Emulator(data=emulator_data(), latency_ms=LATENCY_MS, state_dir=os.path.join(work, 'emulator')) as emu:
            progress('emulator at %s, %d ms latency per request; work directory %s' % (emu.base_url, LATENCY_MS, work))
            bench = Bench(work, emu, scenarios, contenders)
            fleet_scenarios(bench, results['scenarios'], meta)
            list_scenario(bench, results['scenarios'], meta)
            scale_scenarios(bench, results['scenarios'], meta)
            meta['notes'] = bench.meta_notes
            meta['runs'] = bench.runs
    except BenchError as error:
        print('bench: %s' % error, file=sys.stderr)
        return 1
    target_rows = targets(results['scenarios'], meta)
    meta['targets'] = [{'target': name, 'result': result, 'figure': figure} for name, result, figure in target_rows]
    meta['total_s'] = round(time.perf_counter() - started, 1)
    results['meta'] = meta
    with open(RESULTS, 'w', encoding='utf-8') as handle:
        json.dump(results, handle, indent=2)
        handle.write('\n')
    shutil.rmtree(work, ignore_errors=True)
    print(report(results['scenarios'], target_rows, meta['runs']))
    for note in meta['notes']:
        print('note: ' + note)
    print('\nwrote %s in %.0f s' % (os.path.relpath(RESULTS), meta['total_s']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
