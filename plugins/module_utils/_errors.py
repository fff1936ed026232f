# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Typed errors raised by the shared code.

Shared code only raises; each front end (module or lookup) has one place that turns a
BitbucketError into fail_json or AnsibleError. Messages are complete sentences for a human
and never contain a secret: callers build them from the method, a redacted URL and the
server's message.
"""

from __future__ import annotations


class BitbucketError(Exception):
    """Base class: str(error) is the message to show."""

    def __init__(self, message, status=None, url=None, method=None):
        super(BitbucketError, self).__init__(message)
        self.message = message
        self.status = status
        self.url = url
        self.method = method

    def __str__(self):
        return self.message

    def result_fields(self):
        """Extra keys for fail_json: only what helps debugging and is never secret."""
        fields = {}
        if self.status is not None:
            fields['status'] = self.status
        if self.url is not None:
            fields['url'] = self.url
        return fields


class ValidationError(BitbucketError):
    """Bad input detected before anything was sent."""


class TransportError(BitbucketError):
    """The request got no HTTP response: refused, reset, timed out, TLS or DNS failure.

    kind is one of refused, dropped, timeout, tls, dns, scheme (http:// to an HTTPS port or
    the reverse), other. Only a dropped connection is worth retrying: the others fail the same
    way again.
    """

    def __init__(self, message, kind='other', url=None, method=None):
        super(TransportError, self).__init__(message, url=url, method=method)
        self.kind = kind

    @property
    def retryable(self):
        return self.kind == 'dropped'


class ProtocolError(BitbucketError):
    """The server answered, but not in a shape we understand (bad JSON, missing fields)."""


class RedirectError(ProtocolError):
    """The server answered with a redirect. It is never followed, so credentials stay on the configured origin."""


class ApiError(BitbucketError):
    """The REST API answered with an HTTP error status."""

    def __init__(self, message, status=None, url=None, method=None, server_message=None):
        super(ApiError, self).__init__(message, status=status, url=url, method=method)
        self.server_message = server_message


class AuthenticationError(ApiError):
    """HTTP 401 or 403: the credentials are wrong, expired or lack a scope."""


class NotFoundError(ApiError):
    """HTTP 404: missing, or private and not visible to these credentials."""


class RateLimitedError(ApiError):
    """HTTP 429 that outlasted the retries."""


class TokenRequestError(BitbucketError):
    """The token endpoint refused a grant; error is the OAuth error code when there is one."""

    def __init__(self, message, error=None, description=None, status=None, url=None, method='POST'):
        super(TokenRequestError, self).__init__(message, status=status, url=url, method=method)
        self.error = error
        self.description = description

    def result_fields(self):
        fields = super(TokenRequestError, self).result_fields()
        if self.error:
            fields['error'] = self.error
        return fields


class CacheError(BitbucketError):
    """The token cache cannot be used at all (unsafe directory, lock timeout, write failure)."""


class CallbackError(BitbucketError):
    """The browser's authorization redirect did not arrive or carried no code; never holds the code."""
