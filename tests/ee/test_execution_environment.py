# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The execution environment: extensions/ee/execution-environment.yml and meta/execution-environment.yml, offline.

Building the image needs a registry (the base image, Galaxy), so these tests stop where the build would
start: the real `ansible-builder create` writes the build context, and the real `ansible-builder introspect`
reads the built and installed collection as the image build would.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from bindep.depends import Depends
from packaging.specifiers import SpecifierSet

BIN_DIR = os.path.dirname(sys.executable)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFINITION = os.path.join(REPO_ROOT, 'extensions', 'ee', 'execution-environment.yml')
TARBALL = 'codeferry-bitbucket.tar.gz'   # the name the definition's commented alternative expects


def run(*argv, **kwargs):
    """Run a tool of the venv; the output is part of the failure message."""
    result = subprocess.run([os.path.join(BIN_DIR, argv[0])] + list(argv[1:]), capture_output=True, text=True,
                            check=False, **kwargs)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout


def create(definition, context):
    run('ansible-builder', 'create', '-f', str(definition), '-c', str(context), '--output-filename', 'Containerfile')
    with open(os.path.join(context, 'Containerfile'), encoding='utf-8') as handle:
        containerfile = handle.read()
    with open(os.path.join(context, '_build', 'requirements.yml'), encoding='utf-8') as handle:
        galaxy = yaml.safe_load(handle)
    return containerfile, galaxy


def pinned_for_tests(package):
    """The version of package that requirements.txt installs, the one the test suites run."""
    with open(os.path.join(REPO_ROOT, 'requirements.txt'), encoding='utf-8') as handle:
        (version,) = re.findall(r'^%s==(\S+)$' % re.escape(package), handle.read(), re.M)
    return version


def packages(bindep_text, profiles):
    """The packages bindep would install on a platform with these profiles."""
    return [rule[0] for rule in Depends(bindep_text).active_rules(profiles)]


def galaxy_env(collections):
    # Only the new path counts: a copy installed elsewhere (~/.ansible) must not make the install a no-op.
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false')


def installed_manifest(collections):
    with open(os.path.join(collections, 'ansible_collections', 'codeferry', 'bitbucket', 'MANIFEST.json'),
              encoding='utf-8') as handle:
        return yaml.safe_load(handle)['collection_info']


@pytest.fixture(scope='module', name='tarball')
def tarball_fixture(tmp_path_factory):
    """The collection as `ansible-galaxy collection build` makes it from this checkout."""
    output = tmp_path_factory.mktemp('built')
    run('ansible-galaxy', 'collection', 'build', '--output-path', str(output), REPO_ROOT)
    (name,) = os.listdir(output)
    return output / name


def test_create_writes_a_context_that_installs_the_collection_and_introspects_it(tmp_path):
    with open(DEFINITION, encoding='utf-8') as handle:
        definition = yaml.safe_load(handle)
    containerfile, galaxy = create(DEFINITION, tmp_path / 'context')

    base_image = definition['images']['base_image']['name']
    assert 'ARG EE_BASE_IMAGE="%s"\n' % base_image in containerfile
    assert 'ARG PKGMGR="/usr/bin/microdnf"\n' in containerfile and 'ARG PYCMD="/usr/bin/python3.11"\n' in containerfile

    # The image runs the ansible-core and ansible-runner that the tests run, inside meta/runtime.yml's range.
    core, runner = pinned_for_tests('ansible-core'), pinned_for_tests('ansible-runner')
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"\n' % (core, runner) in containerfile
    assert 'RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS\n' in containerfile
    with open(os.path.join(REPO_ROOT, 'meta', 'runtime.yml'), encoding='utf-8') as handle:
        assert core in SpecifierSet(yaml.safe_load(handle)['requires_ansible'])

    assert galaxy['collections'] == [{'name': 'codeferry.bitbucket', 'version': '>=1.0.0,<2.0.0'}]
    steps = containerfile.splitlines()
    galaxy_install = steps.index('RUN ANSIBLE_GALAXY_DISABLE_GPG_VERIFY=1 ansible-galaxy collection install '
                                 '$ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml '
                                 '--collections-path "/usr/share/ansible/collections"')
    # Introspection of the installed collections is what brings git (meta/bindep.txt) into the image.
    introspect = [index for index, step in enumerate(steps) if step.startswith('RUN $PYCMD /output/scripts/introspect.py introspect ')]
    install_system = steps.index('RUN /output/scripts/install-from-bindep && rm -rf /output/wheels')
    assert len(introspect) == 1 and galaxy_install < introspect[0] < install_system, containerfile
    assert '--user-bindep=bindep.txt' in steps[introspect[0]]

    with open(tmp_path / 'context' / '_build' / 'bindep.txt', encoding='utf-8') as handle:
        assert packages(handle.read(), ['platform:rpm', 'platform:redhat']) == ['openssh-clients']


def test_the_built_collection_declares_git_and_no_python_requirement(tmp_path, tarball):
    collections = tmp_path / 'collections'
    run('ansible-galaxy', 'collection', 'install', '--offline', '--no-deps', '-p', str(collections), str(tarball),
        env=galaxy_env(collections))
    report = yaml.safe_load(run('ansible-builder', 'introspect', str(collections),
                                '--write-bindep', str(tmp_path / 'bindep.txt'), '--write-pip', str(tmp_path / 'requirements.txt')))

    assert report == {'python': [], 'system': ['git  # from collection codeferry.bitbucket']}
    assert not os.path.exists(tmp_path / 'requirements.txt')
    with open(tmp_path / 'bindep.txt', encoding='utf-8') as handle:
        system = handle.read()
    # The same package name on the image's platform and on Debian-like ones.
    for platform in (['platform:rpm', 'platform:redhat'], ['platform:dpkg', 'platform:debian']):
        assert packages(system, platform) == ['git'], platform


def without_galaxy(text):
    """The definition as its comment says to change it for a build without Galaxy."""
    text, swapped = re.subn(r"^ *- name: codeferry\.bitbucket\n *version: .*\n", '', text, flags=re.M)
    assert swapped == 1, text
    alternative = r'^( *)# ( *- name: collections/.*| *type: file|additional_build_files:| *- src: .*| *dest: .*)$'
    text, uncommented = re.subn(alternative, r'\1\2', text, flags=re.M)
    assert uncommented == 5, text
    return text


def test_without_galaxy_the_context_carries_the_tarball_and_installs_it_offline(tmp_path, tarball):
    source = tmp_path / 'definition'
    source.mkdir()
    with open(DEFINITION, encoding='utf-8') as handle:
        (source / 'execution-environment.yml').write_text(without_galaxy(handle.read()), encoding='utf-8')
    shutil.copy(tarball, source / TARBALL)

    containerfile, galaxy = create(source / 'execution-environment.yml', tmp_path / 'context')
    assert galaxy['collections'] == [{'name': 'collections/' + TARBALL, 'type': 'file'}]
    # The galaxy stage copies _build to /build and installs from there: the same command, here, offline.
    assert 'COPY _build /build\nWORKDIR /build\n' in containerfile
    collections = tmp_path / 'collections'
    run('ansible-galaxy', 'collection', 'install', '--offline', '-r', 'requirements.yml', '--collections-path', str(collections),
        cwd=tmp_path / 'context' / '_build', env=galaxy_env(collections))
    with open(os.path.join(REPO_ROOT, 'galaxy.yml'), encoding='utf-8') as handle:
        version = yaml.safe_load(handle)['version']
    info = installed_manifest(collections)
    assert (info['namespace'], info['name'], info['version']) == ('codeferry', 'bitbucket', version)
