# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One HTTP helper over ansible.module_utils.urls, with a module and a plugin backend.

Both backends offer request(method, url, headers, data) -> (status, headers, body): any HTTP
status comes back as a normal result (the caller decides what an error is), and a failure to
get a response at all raises TransportError with a short, secret-free message.
"""

from __future__ import annotations

import os
import re
import socket
import ssl

from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

from ansible.module_utils.urls import fetch_url, open_url

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import TransportError, ValidationError

REDACTED = '********'
MAX_TIMEOUT = 3600

# Query parameters whose values are never shown, whatever the server put in a link.
_SECRET_PARAMS = re.compile(r'(?:token|secret|password|passwd|code|key|jwt|signature|sig)$', re.IGNORECASE)

# fetch_url() puts these next to the response headers in its info dict.
_INFO_KEYS = frozenset(('url', 'status', 'msg', 'body', 'cookies', 'cookies_string', 'exception'))


def safe_url(url):
    """The URL with userinfo removed and secret-looking query values replaced, for messages."""
    try:
        parts = urlsplit(url)
    except (TypeError, ValueError):
        return '<invalid URL>'
    netloc = parts.netloc.rpartition('@')[2]
    query = parts.query
    if query:
        pairs = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if _SECRET_PARAMS.search(name):
                value = REDACTED
            pairs.append('%s=%s' % (name, value))
        query = '&'.join(pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ''))


_CONTROL = re.compile(r'[\x00-\x20\x7f]')


def has_control_chars(value):
    """Whitespace or control characters: invalid in a header value, and http.client's error would quote it."""
    return bool(_CONTROL.search(value))


def redact(text, secrets):
    """text with every secret replaced by REDACTED, also in the encodings a server may echo back.

    Server-provided text (error bodies) is the one part of a message that shared code does not
    build itself; a server or proxy that echoes the request would quote the secrets as they
    were sent: raw, percent-encoded in a form body, or inside a Basic credential.
    """
    forms = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 4:
            forms.update((secret, quote(secret, safe=''), quote(secret), quote_plus(secret)))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def validate_timeout(value):
    # The upper bound catches typos before urllib turns them into an obscure overflow error.
    if (value is None or isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= MAX_TIMEOUT):
        raise ValidationError('timeout must be a number of seconds above 0 and at most %d, got %r' % (MAX_TIMEOUT, value))
    return value


def check_ca_path(ca_path):
    """Fail early, and clearly, on a ca_path that urllib would only report as a connection failure."""
    if not os.path.exists(ca_path):
        raise ValidationError('ca_path %s does not exist' % ca_path)
    if os.path.isdir(ca_path):
        raise ValidationError('ca_path %s is a directory; give the PEM file of the CA certificates' % ca_path)
    try:
        ssl.create_default_context().load_verify_locations(cafile=ca_path)
    except ssl.SSLError:
        raise ValidationError('ca_path %s holds no PEM certificate that can be used' % ca_path)
    except OSError as exc:
        raise ValidationError('cannot read ca_path %s: %s' % (ca_path, exc.strerror or exc))


_DROPPED_MARKERS = ('connection reset', 'remote end closed', 'closed before a valid response', 'incompleteread',
                    'incomplete read', 'broken pipe', 'eof occurred', 'connection aborted', 'remotedisconnected')
_DNS_MARKERS = ('name or service not known', 'nodename nor servname', 'getaddrinfo', 'temporary failure in name resolution',
                'no address associated')


def _classify(text):
    """Map the text of a connection failure to (kind, short description)."""
    lowered = text.lower()
    if 'certificate_verify_failed' in lowered or 'certificate verify failed' in lowered:
        detail = ''
        match = re.search(r'certificate verify failed:?\s*([^()>\]]*)', text, re.IGNORECASE)
        if match and match.group(1).strip():
            detail = ' (%s)' % match.group(1).strip().rstrip('.')
        return 'tls', ('certificate verify failed%s; set ca_path to the CA bundle that signed the server '
                       'certificate, or validate_certs=false (not recommended)' % detail)
    if 'connection refused' in lowered or 'errno 111' in lowered:
        return 'refused', 'connection refused'
    if 'timed out' in lowered or 'timeout' in lowered:
        return 'timeout', 'timed out'
    if any(marker in lowered for marker in _DROPPED_MARKERS):
        return 'dropped', 'connection dropped by the server'
    if any(marker in lowered for marker in _DNS_MARKERS):
        return 'dns', 'could not resolve the host name'
    if 'ssl' in lowered or 'tls' in lowered:
        return 'tls', 'TLS error: %s' % text.strip()
    return 'other', text.strip() or 'request failed'


def _exception_kind(exc):
    """Classify an exception object from open_url() or from reading a response body."""
    reason = exc.reason if isinstance(exc, URLError) and not isinstance(exc, HTTPError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return _classify('certificate verify failed: %s' % (getattr(reason, 'verify_message', '') or ''))
    if isinstance(reason, ConnectionRefusedError):
        return 'refused', 'connection refused'
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return 'timeout', 'timed out'
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return 'dropped', 'connection dropped by the server'
    if isinstance(reason, socket.gaierror):
        return 'dns', 'could not resolve the host name'
    return _classify('%s: %s' % (type(reason).__name__, reason))


def transport_error(method, url, kind, description, timeout=None):
    if kind == 'timeout' and timeout:
        description = 'timed out after %s seconds (raise timeout if the server is slow)' % timeout
    return TransportError('%s %s: %s' % (method, safe_url(url), description), kind=kind, url=safe_url(url), method=method)


def _lower_headers(items):
    headers = {}
    for name, value in items:
        name = name.lower()
        headers[name] = '%s, %s' % (headers[name], value) if name in headers else value
    return headers


class HttpHelper(object):
    """Common options; subclasses implement _send()."""

    def __init__(self, validate_certs=True, ca_path=None, timeout=30):
        # Checked here, once for every front end, before anything is sent.
        validate_timeout(timeout)
        if ca_path and validate_certs:
            check_ca_path(ca_path)
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout

    def request(self, method, url, headers=None, data=None):
        """Send one request; return (status, headers with lower-case names, body bytes)."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        return self._send(method, url, dict(headers or {}), data)

    def _send(self, method, url, headers, data):
        raise NotImplementedError

    def _read(self, response, method, url):
        try:
            return response.read()
        except Exception as exc:  # the body read is where dropped connections show up
            kind, description = _exception_kind(exc)
            raise transport_error(method, url, kind, description, self.timeout)


class ModuleHttp(HttpHelper):
    """Backend for modules: fetch_url(), which also honours the module's proxy settings."""

    def __init__(self, module, validate_certs=True, ca_path=None, timeout=30):
        super(ModuleHttp, self).__init__(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
        self.module = module

    def _send(self, method, url, headers, data):
        # fetch_url() reads validate_certs from module.params; the module and this helper agree.
        response, info = fetch_url(self.module, url, data=data, headers=headers, method=method,
                                   timeout=self.timeout, ca_path=self.ca_path, use_netrc=False)
        status = info.get('status', -1)
        if status is None or status < 0:
            kind, description = _classify(str(info.get('msg') or ''))
            raise transport_error(method, url, kind, description, self.timeout)
        resp_headers = _lower_headers((k, v) for k, v in info.items()
                                      if k not in _INFO_KEYS and isinstance(v, str))
        if status >= 400 or response is None:
            body = info.get('body') or b''
            if isinstance(body, str):
                body = body.encode('utf-8')
            return status, resp_headers, body
        return status, resp_headers, self._read(response, method, url)


class PluginHttp(HttpHelper):
    """Backend for controller plugins (the lookup): open_url()."""

    def _send(self, method, url, headers, data):
        try:
            response = open_url(url, data=data, headers=headers, method=method, timeout=self.timeout,
                                validate_certs=self.validate_certs, ca_path=self.ca_path, use_netrc=False,
                                follow_redirects='safe')
        except HTTPError as exc:
            try:
                body = exc.read() if exc.fp is not None else b''
            except Exception:
                body = b''
            return exc.code, _lower_headers(exc.headers.items() if exc.headers else ()), body
        except Exception as exc:
            kind, description = _exception_kind(exc)
            raise transport_error(method, url, kind, description, self.timeout)
        try:
            body = self._read(response, method, url)
            return response.status, _lower_headers(response.headers.items()), body
        finally:
            response.close()
