"""`make demo`: the checkout role puts a query's worth of repositories onto three hosts, twice.

It starts the Bitbucket emulator with the bundled data, writes an inventory of three local
"hosts" (localhost entries with separate checkout roots, so no containers are needed) and runs
playbooks/demo.yml: a cold run, then a warm one that changes nothing; then the same pair with
checkout_transport=controller onto three more hosts, where the controller fetches each repository
once into a mirror and sends the hosts bundles; then a cold and a warm run against the emulator's
Bitbucket Data Center flavour onto three more hosts, with a project HTTP access token (a Bearer
header for git). Then it prints a table of host, repository, commit and mode, and the emulator's
request counters for each run.
Secrets are never printed.
"""

import json
import os
import re
import stat
import subprocess
import sys
import tempfile

from bitbucket_emulator.testing import Emulator

CLIENT_ID = 'demoKey1234567890ab'
CLIENT_SECRET = 'demoSecret+With/Odd=Chars0123456789'
# The bundled Data Center data's project token of OPS (tests/emulator/bitbucket_emulator/data/datacenter.yml).
DC_PROJECT_TOKEN = 'dc-project-ops-read-0123456789abcdefg'
HOSTS = ('web1', 'web2', 'web3')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.path.dirname(sys.executable)
RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.MULTILINE)


def step(text):
    print('\n==> ' + text, flush=True)


def collections_path(work):
    """A collections tree whose codeferry/bitbucket entry is this checkout."""
    root = os.path.join(work, 'collections')
    namespace = os.path.join(root, 'ansible_collections', 'codeferry')
    os.makedirs(namespace)
    os.symlink(REPO_ROOT, os.path.join(namespace, 'bitbucket'))
    return root


def write_inventory(work, hosts='hosts'):
    path = os.path.join(work, 'inventory-%s.ini' % hosts)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('[demo]\n')
        for host in HOSTS:
            home = os.path.join(work, hosts, host)
            handle.write('%s ansible_connection=local checkout_root=%s checkout_host_ca_path=%s\n'
                         % (host, os.path.join(home, 'srv'), os.path.join(home, 'etc', 'ca.pem')))
        # Interpreter discovery can pick a Python without Ansible's dependencies on some machines.
        handle.write('\n[demo:vars]\nansible_python_interpreter=%s\n' % sys.executable)
    return path


def play(work, emu, inventory, extra_vars):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(work, 'collections'),
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
        'ANSIBLE_HOME': os.path.join(work, 'ansible-home'),
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_NOCOLOR': 'true',
        'ANSIBLE_PIPELINING': 'true',
        'BITBUCKET_CLIENT_ID': CLIENT_ID,
        'BITBUCKET_CLIENT_SECRET': CLIENT_SECRET,
        'PATH': BIN_DIR + os.pathsep + env.get('PATH', ''),
    })
    print('$ ansible-playbook -i %s playbooks/demo.yml -e @%s' % (inventory, extra_vars), flush=True)
    emu.reset()
    proc = subprocess.run([os.path.join(BIN_DIR, 'ansible-playbook'), '-i', inventory,
                           os.path.join(REPO_ROOT, 'playbooks', 'demo.yml'), '-e', '@' + extra_vars],
                          env=env, cwd=work, capture_output=True, text=True, check=False)
    print(proc.stdout[proc.stdout.find('PLAY RECAP'):].rstrip() if proc.returncode == 0 else proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit('the demo playbook failed (exit code %d)' % proc.returncode)
    stats = emu.stats()
    secrets = stats['tokens'] + [CLIENT_SECRET, DC_PROJECT_TOKEN]
    if any(secret in proc.stdout + proc.stderr for secret in secrets):
        raise SystemExit('a token or the client secret appeared in the output')
    changed = sum(int(match.group(3)) for match in RECAP.finditer(proc.stdout))
    return changed, stats['requests']


def git(*args):
    return subprocess.run(['git'] + list(args), check=True, capture_output=True, text=True).stdout.strip()


def table(work, hosts='hosts'):
    rows = [('host', 'repository', 'commit', 'mode', 'origin')]
    for host in HOSTS:
        root = os.path.join(work, hosts, host, 'srv')
        for name in sorted(os.listdir(root)):
            dest = os.path.join(root, name)
            rows.append((host, name, git('-C', dest, 'rev-parse', '--short=12', 'HEAD'),
                         '%04o' % stat.S_IMODE(os.stat(dest).st_mode), git('-C', dest, 'remote', 'get-url', 'origin')))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print('  ' + '  '.join(cell.ljust(width) for cell, width in zip(row, widths)))


def main():
    work = tempfile.mkdtemp(prefix='codeferry-demo-')
    with Emulator(state_dir=os.path.join(work, 'emulator')) as emu:
        step('Bitbucket emulator running (bundled demo data) at %s' % emu.info['base_url'])
        inventory = write_inventory(work)
        extra_vars = os.path.join(work, 'emulator-vars.json')
        with open(extra_vars, 'w', encoding='utf-8') as handle:
            json.dump({'checkout_api_url': emu.api_url, 'checkout_token_url': emu.token_url,
                       'checkout_git_url': emu.git_url, 'checkout_ca_path': emu.ca_file,
                       'checkout_token_cache_dir': os.path.join(work, 'token-cache')}, handle, indent=2)
        collections_path(work)

        counters = []
        for label in ('cold run: clone everything', 'warm run: nothing changed upstream'):
            step('%s (role codeferry.bitbucket.checkout, workspace acme, query project.key != "GEN")' % label)
            counters.append((label,) + play(work, emu, inventory, extra_vars))

        controller_vars = os.path.join(work, 'controller-vars.json')
        with open(controller_vars, 'w', encoding='utf-8') as handle:
            with open(extra_vars, encoding='utf-8') as source:
                json.dump(dict(json.load(source), checkout_transport='controller',
                               checkout_mirror_dir=os.path.join(work, 'mirrors')), handle, indent=2)
        other_hosts = write_inventory(work, 'controller-hosts')
        for label in ('controller transport, cold', 'controller transport, warm'):
            step('%s (checkout_transport=controller, three more hosts: one mirror fetch per repository, '
                 'bundles over the connection, no token on the hosts)' % label)
            counters.append((label,) + play(work, emu, other_hosts, controller_vars))

        with Emulator(flavor='datacenter', state_dir=os.path.join(work, 'emulator-datacenter')) as dc:
            step('Bitbucket Data Center emulator running (bundled data) at %s' % dc.info['base_url'])
            dc_vars = os.path.join(work, 'datacenter-vars.json')
            with open(dc_vars, 'w', encoding='utf-8') as handle:
                # The play's Cloud selection and consumer are replaced: Data Center selects by project
                # and has no client credentials grant. git and token URLs follow from the API URL.
                json.dump({'checkout_api_url': dc.api_url, 'checkout_ca_path': dc.ca_file,
                           'checkout_repositories': [{'repository': 'OPS/deploy'}, {'repository': 'OPS/config'}],
                           'checkout_query': '', 'checkout_client_id': '', 'checkout_client_secret': '',
                           'checkout_access_token': DC_PROJECT_TOKEN}, handle, indent=2)
            dc_hosts = write_inventory(work, 'datacenter-hosts')
            for label in ('Data Center, cold', 'Data Center, warm'):
                step('%s (project token OPS, sent to git as a Bearer header from the environment only)' % label)
                counters.append((label,) + play(work, dc, dc_hosts, dc_vars))

        step('Checkouts on the three hosts (one commit per repository, the same on every host)')
        table(work)
        step('Checkouts made with the controller transport')
        table(work, 'controller-hosts')
        step('Checkouts from Bitbucket Data Center')
        table(work, 'datacenter-hosts')
        step('Emulator request counters per run')
        for label, changed, requests in counters:
            print('  %-36s changed=%-3d token=%d api=%d git=%d'
                  % (label, changed, requests['token'], requests['api'], requests['git']))
    print('\nDemo finished. Files are in %s' % work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
