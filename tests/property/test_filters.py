# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""token_url and redact_url with generated URLs, tokens and user names of every type.

Each filter either returns a string or raises AnsibleFilterError with a message that does not
hold the token; a returned URL carries exactly the given credentials, and redacting it hides them.
"""

from __future__ import annotations

import string

from urllib.parse import unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.codeferry.bitbucket.plugins.filter.urls import FilterModule

from property_helpers import MIN_SECRET_LENGTH, anything, count, examples, odd_text, url_like

FILTERS = FilterModule().filters()
token_url = FILTERS['token_url']
redact_url = FILTERS['redact_url']

HOSTS = ['bitbucket.org', 'bitbucket.org:443', 'BitBucket.ORG', '127.0.0.1:8443', '[::1]:8443', 'xn--bcher-kva.example',
         '[::1', '[fe80::1%25eth0]', 'h\u00f6st.example', 'host:99999', 'host:0', 'host:', ':443']
_URLS = url_like(HOSTS, paths=st.one_of(st.just('/acme/api.git'), odd_text.map(lambda text: '/' + text)))
_TOKENS = st.one_of(odd_text, st.text(string.ascii_letters + string.digits + '+/=_-', min_size=8, max_size=200), anything)
# A password for a URL: anything that does not end the userinfo early.
_PASSWORDS = st.text(st.characters(exclude_categories=(), exclude_characters='@/?#'), min_size=MIN_SECRET_LENGTH, max_size=40)


def _watch(token, url):
    """Whether to look for token in output: long enough, and not already part of the URL that may be shown."""
    return isinstance(token, str) and len(token) >= MIN_SECRET_LENGTH and (not isinstance(url, str) or token not in url)


@settings(max_examples=examples(1500))
@given(url=_URLS, token=_TOKENS, username=st.one_of(st.just('x-token-auth'), odd_text, anything), pass_username=st.booleans())
def test_token_url(url, token, username, pass_username):
    count('filter token_url')
    try:
        result = token_url(url, token, username) if pass_username else token_url(url, token)
    except AnsibleFilterError as exc:
        message = str(exc)
        assert message.strip()
        if _watch(token, url):
            assert token not in message
        return
    user = username if pass_username else 'x-token-auth'
    parts = urlsplit(result)
    assert (unquote(parts.username), unquote(parts.password)) == (user, token)
    assert parts.scheme in ('https', 'http')
    assert not any(ord(char) <= 0x20 or ord(char) == 0x7f for char in result)
    shown = redact_url(result)
    assert urlsplit(shown).password == '********'
    if _watch(token, url):
        assert token not in shown


@settings(max_examples=examples(1000))
@given(url=st.one_of(_URLS, anything), scheme=st.sampled_from(['https', 'http', 'ssh', 'git+ssh', 'HTTPS', 'x']),
       user=st.one_of(st.just('x-token-auth'), st.just(''), st.text(st.characters(exclude_characters=':@/?#'), max_size=10)),
       password=_PASSWORDS, host=st.sampled_from(HOSTS), rest=st.one_of(st.just(''), odd_text.map(lambda text: '/' + text)))
def test_redact_url(url, scheme, user, password, host, rest):
    count('filter redact_url')
    # Any value: a string comes back as a string, anything else is a clean filter error.
    try:
        shown = redact_url(url)
    except AnsibleFilterError as exc:
        assert not isinstance(url, str) and str(exc).strip()
    else:
        assert isinstance(shown, str) and redact_url(shown) == shown
    # A URL with a password: the password goes, the user name and everything after the authority stay.
    secret_url = '%s://%s:%s@%s%s' % (scheme, user, password, host, rest)
    shown = redact_url(secret_url)
    assert shown == '%s://%s:********@%s%s' % (scheme, user, host, rest)
    if password not in '%s://%s:********@%s%s' % (scheme, user, host, rest):
        assert password not in shown
