# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The PKCE S256 challenge filter: RFC 7636's own example, the verifier rules, secret-free messages."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.codeferry.bitbucket.plugins.filter.pkce import FilterModule, pkce_challenge


def test_rfc_7636_appendix_b_example():
    assert pkce_challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk') == 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'


@pytest.mark.parametrize('verifier', ['a' * 43, '~._-' * 32, 'Z9' * 40])
def test_challenge_is_unpadded_base64url_of_the_sha256(verifier):
    challenge = pkce_challenge(verifier)
    assert len(challenge) == 43 and '=' not in challenge and '+' not in challenge and '/' not in challenge
    assert base64.urlsafe_b64decode(challenge + '=') == hashlib.sha256(verifier.encode()).digest()


@pytest.mark.parametrize('verifier, reason', [
    ('short-Secret-Verifier', 'got 21 characters'),
    ('x' * 129, 'got 129 characters'),
    ('secret+verifier/with=base64-chars-0123456789ab', 'a character outside that set'),
    ('secret verifier with a space 0123456789abcdefgh', 'a character outside that set'),
    ('ünïcødé-secret-verifier-0123456789abcdefghijk', 'a character outside that set'),
])
def test_bad_verifiers_are_refused_without_quoting_them(verifier, reason):
    with pytest.raises(AnsibleFilterError) as info:
        pkce_challenge(verifier)
    assert reason in str(info.value) and 'RFC 7636' in str(info.value)
    assert verifier not in str(info.value) and 'secret' not in str(info.value).lower()


@pytest.mark.parametrize('value', [None, 42, b'a' * 43])
def test_non_strings_are_refused(value):
    with pytest.raises(AnsibleFilterError, match='code_verifier must be .* got a '):
        pkce_challenge(value)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'pkce_challenge': pkce_challenge}


def test_ansible_doc_shows_the_filter():
    # The documentation lives in the adjacent YAML file: ansible-doc must find and parse it.
    import ansible_collections.codeferry.bitbucket as package
    collections_root = os.path.dirname(os.path.dirname(os.path.dirname(list(package.__path__)[0])))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root, ANSIBLE_NOCOLOR='1')
    ansible_doc = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    proc = subprocess.run([ansible_doc, '-t', 'filter', 'codeferry.bitbucket.pkce_challenge'], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'S256' in proc.stdout and 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM' in proc.stdout
