# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The oauth_token lookup, in-process through Ansible's plugin loader, with generated options.

It returns one token or raises AnsibleError with a message: never another exception, a
traceback or a secret.
"""

from __future__ import annotations

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible.errors import AnsibleError
from ansible.plugins.loader import lookup_loader

from property_helpers import (
    URL_SECRET,
    anything,
    assert_no_secret,
    count,
    examples,
    odd_text,
    passed_secrets,
    path_like,
    place,
    secret_forms,
    slug_like,
    spoil,
    time_limit,
    url_like,
    working_directory,
    wrong_types,
)


@pytest.fixture(scope='module')
def lookup():
    plugin = lookup_loader.get('codeferry.bitbucket.oauth_token')
    assert plugin is not None, 'the collection loader did not find the lookup (see tests/property/conftest.py)'
    return plugin


@pytest.fixture(scope='module')
def options(target):
    valid = dict(token_url=target.token_url, ca_path=target.ca_file, timeout=10, client_id=target.client_id,
                 client_secret=target.client_secret, cache_dir=target.cache_dir)
    secret = st.one_of(odd_text, wrong_types)
    bad = dict(token_url=url_like([target.hostport]), ca_path=path_like, timeout=anything, client_id=anything,
               client_secret=secret, cache_dir=path_like, cache=anything, cache_entry=st.one_of(slug_like, anything),
               code=secret, refresh_token=secret, force=anything, min_ttl=anything, redirect_uri=anything,
               validate_certs=anything,
               grant_type=st.one_of(st.sampled_from(['client_credentials', 'refresh_token', 'authorization_code', 'x']), anything))
    return st.tuples(spoil(valid, bad), st.one_of(st.just([]), st.lists(anything, min_size=1, max_size=2)))


@settings(max_examples=examples(800))
@given(data=st.data())
def test_oauth_token_lookup(target, lookup, options, data):
    count('lookup oauth_token')
    kwargs, terms = data.draw(options, label='options and terms')
    with target.case_dir() as case_dir:
        kwargs = place(kwargs, case_dir)
        secrets = secret_forms(target.secrets(URL_SECRET, *passed_secrets(kwargs)))
        try:
            # In the case's directory, so that a relative cache_dir lands there.
            with working_directory(case_dir), time_limit(30):
                result = lookup.run(terms, variables={}, **kwargs)
        except AnsibleError as exc:
            message = str(exc)
            assert message.strip() and 'Traceback' not in message and 'unexpected error' not in message
            assert_no_secret('the error', [message], secrets)
            return
    assert isinstance(result, list) and len(result) == 1 and result[0] in target.secrets()
