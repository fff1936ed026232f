# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The PKCE (RFC 7636) S256 code challenge of a code verifier, for the authorize playbook.

Jinja can hash a string but not base64url-encode the raw digest, which S256 needs. The
documentation of the filter is in the adjacent pkce_challenge.yml.
"""

from __future__ import annotations

import base64
import hashlib
import re

from ansible.errors import AnsibleFilterError

# RFC 7636 section 4.1: 43 to 128 characters of the unreserved set.
_VERIFIER = re.compile(r'[A-Za-z0-9._~-]{43,128}')


def pkce_challenge(verifier):
    """BASE64URL(SHA256(ASCII(verifier))) without padding; the messages never quote the verifier."""
    if not isinstance(verifier, str):
        raise AnsibleFilterError(f'pkce_challenge expects the code verifier as a string, got {type(verifier).__name__}')
    if not _VERIFIER.fullmatch(verifier):
        reason = (f'it has {len(verifier)} characters' if not 43 <= len(verifier) <= 128
                  else 'it has a character outside that set')
        raise AnsibleFilterError('pkce_challenge expects a code verifier of 43 to 128 characters of A-Z, a-z, 0-9 '
                                 f'and -._~ (RFC 7636); {reason}')
    digest = hashlib.sha256(verifier.encode('ascii')).digest()
    return base64.urlsafe_b64encode(digest).decode('ascii').rstrip('=')


class FilterModule:
    """codeferry.bitbucket PKCE filter."""

    def filters(self):
        return {'pkce_challenge': pkce_challenge}
