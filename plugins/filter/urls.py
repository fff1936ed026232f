# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters that put credentials into clone URLs and take them out again for display.

The documentation of each filter is in the adjacent token_url.yml and redact_url.yml.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from ansible.errors import AnsibleFilterError

from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import CONTROL_CHARS, REDACTED

_SCHEME = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*')
_SSH_SCHEMES = frozenset(('ssh', 'git+ssh', 'ssh+git'))


def _split(url):
    """Split an absolute URL into (scheme, userinfo, hostport, rest), or return None.

    userinfo is None when the URL has no '@' in its authority. Splitting by hand rather than
    rebuilding with urlunsplit() keeps everything after the authority byte for byte. The
    authority ends at the first '/', '?' or '#', and userinfo ends at its last '@', as in
    RFC 3986 and urlsplit().
    """
    scheme, sep, remainder = url.partition('://')
    if not sep or not _SCHEME.fullmatch(scheme):
        return None
    end = len(remainder)
    for delimiter in '/?#':
        index = remainder.find(delimiter)
        if index != -1:
            end = min(end, index)
    authority, rest = remainder[:end], remainder[end:]
    userinfo, at, hostport = authority.rpartition('@')
    return scheme, (userinfo if at else None), hostport, rest


def redact_url(url):
    """Replace the password of a URL with REDACTED; anything else comes back unchanged.

    Unlike module_utils' strip_userinfo(), it keeps the user name (x-token-auth says which
    credential a remote uses) and every byte after the authority, as documented for the filter.
    """
    if not isinstance(url, str):
        raise AnsibleFilterError(f'redact_url expects a string, got {type(url).__name__}')
    parts = _split(url)
    if parts is None or parts[1] is None:
        return url
    scheme, userinfo, hostport, rest = parts
    if ':' not in userinfo:
        return url
    username = userinfo.split(':', 1)[0]
    return f'{scheme}://{username}:{REDACTED}@{hostport}{rest}'


def token_url(url, token, username='x-token-auth'):
    """Return url with username and token as its (percent-encoded) userinfo.

    Error messages show the URL only through redact_url() and never show the token.
    """
    if not isinstance(url, str):
        raise AnsibleFilterError(f'token_url expects the URL as a string, got {type(url).__name__}')
    if not isinstance(token, str):
        raise AnsibleFilterError(f'token_url expects the token as a string, got {type(token).__name__}')
    if not token:
        raise AnsibleFilterError('token_url got an empty token')
    if not isinstance(username, str) or not username:
        raise AnsibleFilterError('token_url expects the username as a non-empty string')

    shown = redact_url(url)
    # urlsplit() silently drops some of these characters, git does not.
    if CONTROL_CHARS.search(url):
        raise AnsibleFilterError(f'token_url got a URL with whitespace or control characters: {shown!r}')
    parts = _split(url)
    if parts is None or parts[0].lower() in _SSH_SCHEMES:
        raise AnsibleFilterError(f'token_url needs an https:// URL; got an SSH or scheme-less URL: {shown}')
    scheme, hostport, rest = parts[0].lower(), parts[2], parts[3]
    if scheme not in ('https', 'http'):
        raise AnsibleFilterError(f'token_url needs an https:// URL; got a {scheme}:// URL: {shown}')

    # urlsplit() is only a validator here: it checks the brackets of IPv6 literals and the port.
    try:
        checked = urlsplit(f'{scheme}://{hostport}')
        hostname, port = checked.hostname, checked.port
    except ValueError as exc:
        raise AnsibleFilterError(f'token_url cannot parse the host and port of {shown}: {exc}') from None
    if not hostname:
        raise AnsibleFilterError(f'token_url needs a URL with a host: {shown}')
    if port == 0:
        raise AnsibleFilterError(f'token_url needs a URL with a usable port, not 0: {shown}')

    try:
        userinfo = f"{quote(username, safe='')}:{quote(token, safe='')}"
    except UnicodeEncodeError:
        # The codec's message would quote a character of the token.
        raise AnsibleFilterError('token_url cannot encode the username or token as UTF-8') from None
    return f'{scheme}://{userinfo}@{hostport}{rest}'


class FilterModule:
    """codeferry.bitbucket URL filters."""

    def filters(self):
        return {
            'token_url': token_url,
            'redact_url': redact_url,
        }
