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

from ansible.errors import AnsibleFilterError

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import validate_code_verifier


def pkce_challenge(verifier):
    """BASE64URL(SHA256(ASCII(verifier))) without padding; the messages never quote the verifier."""
    try:
        validate_code_verifier(verifier)
    except ValidationError as exc:
        raise AnsibleFilterError('pkce_challenge: %s' % exc)
    digest = hashlib.sha256(verifier.encode('ascii')).digest()
    return base64.urlsafe_b64encode(digest).decode('ascii').rstrip('=')


class FilterModule:
    """codeferry.bitbucket PKCE filter."""

    def filters(self):
        return {'pkce_challenge': pkce_challenge}
