"""The built collection: what `ansible-galaxy collection build` ships, and that it installs and loads."""

import os
import subprocess
import sys
import tarfile

BIN_DIR = os.path.dirname(sys.executable)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_built_collection_installs_and_documents_every_plugin(tmp_path):
    subprocess.run([os.path.join(BIN_DIR, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(tmp_path), REPO_ROOT],
                   check=True, capture_output=True, text=True)
    (artifact,) = [name for name in os.listdir(tmp_path) if name.endswith('.tar.gz')]
    with tarfile.open(tmp_path / artifact) as archive:
        names = archive.getnames()
    assert 'plugins/modules/oauth_token.py' in names and 'playbooks/authorize.yml' in names
    # The AWX/AAP credential type: users create it from the installed collection.
    assert {'extensions/awx/bitbucket_oauth_consumer.json', 'extensions/awx/README.md'} <= set(names)
    shipped_by_mistake = [name for name in names if name.startswith(('tests/emulator', 'tests/integration', 'tests/hostile',
                                                                     'tests/drills', 'tests/property', 'tests/awx', 'tests/ee', 'bench/',
                                                                     '.venv', '.build', '.ansible', 'mutants'))]
    assert shipped_by_mistake == []

    collections = tmp_path / 'collections'
    # Only the new path counts: a copy installed elsewhere (~/.ansible) must not make the install a no-op.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false')
    subprocess.run([os.path.join(BIN_DIR, 'ansible-galaxy'), 'collection', 'install', '--offline', '-p', str(collections),
                    str(tmp_path / artifact)], env=env, check=True, capture_output=True, text=True)
    for plugin_type, expected in (('module', {'oauth_token', 'repository_info', 'ref_info', 'oauth_callback', 'git_checkout'}),
                                  ('lookup', {'oauth_token'}), ('filter', {'token_url', 'redact_url', 'pkce_challenge'})):
        listing = subprocess.run([os.path.join(BIN_DIR, 'ansible-doc'), '-t', plugin_type, '-l', 'codeferry.bitbucket'],
                                 env=env, check=True, capture_output=True, text=True).stdout
        found = {line.split()[0].rsplit('.', 1)[1] for line in listing.splitlines() if line.startswith('codeferry.bitbucket.')}
        assert found == expected, (plugin_type, listing)
    roles = subprocess.run([os.path.join(BIN_DIR, 'ansible-doc'), '-t', 'role', '-l', 'codeferry.bitbucket'],
                           env=env, check=True, capture_output=True, text=True).stdout
    assert 'codeferry.bitbucket.checkout' in roles, roles
    shown = subprocess.run([os.path.join(BIN_DIR, 'ansible-doc'), '-t', 'role', 'codeferry.bitbucket.checkout'],
                           env=env, check=True, capture_output=True, text=True).stdout
    assert 'checkout_credential_mode' in shown and 'checkout_repositories' in shown
