# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One HTTP helper over ansible.module_utils.urls, with a module and a plugin backend.

Both backends offer request(method, url, headers, data) -> (status, headers, body): an HTTP
error status comes back as a normal result (the caller decides what an error is). A failure to
get a response at all raises TransportError, and a redirect raises RedirectError: credentials
never follow one. Every message is secret-free, and every piece of server text in it is
decoded, redacted and bounded by quote_server_text().

Below the REST client and the token endpoint, this module also holds what both need: URL
validation, and the retry policy with its Retry-After handling.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import http.client
import ipaddress
import json
import math
import os
import random
import re
import socket
import ssl
import time

from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urljoin, urlsplit, urlunsplit

from ansible.module_utils.urls import fetch_url, open_url

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import RedirectError, TransportError, ValidationError

REDACTED = '********'
MAX_TIMEOUT = 3600
RETRY_STATUSES = frozenset((429, 502, 503, 504))

# Whitespace and control characters: invalid in a header value or a git URL, and quoted by the errors
# that http.client and urlsplit() raise about them.
CONTROL_CHARS = re.compile(r'[\x00-\x20\x7f]')

# What quote_server_text() turns into spaces: C0 and C1 controls (terminal escapes, NUL) and the
# Unicode format characters that reorder or hide the text around them.
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]')
# A header value must not end a header line early; spaces and tabs are fine in one.
_HEADER_BREAKING = re.compile(r'[\x00-\x08\x0a-\x1f\x7f]')

# Query parameters (and form fields) whose values are never shown, whatever the server put in a link.
_SECRET_PARAMS = re.compile(r'(?:token|secret|password|passwd|code|key|jwt|signature|sig)$', re.IGNORECASE)

# fetch_url() puts these next to the response headers in its info dict.
_INFO_KEYS = frozenset(('url', 'status', 'msg', 'body', 'cookies', 'cookies_string', 'exception'))

INSECURE_WARNING = ('validate_certs is false: TLS certificates are not verified, so anyone on the network path can '
                    'read the credentials')


# ---------------------------------------------------------------------------------------------
# URLs


def strip_userinfo(url):
    """url without 'user@' or 'user:password@'; None when it cannot be parsed. Anything else is kept."""
    if not isinstance(url, str) or '@' not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if '@' not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition('@')[2]))


def safe_url(url):
    """The URL with userinfo removed and secret-looking query values replaced, for messages."""
    url = strip_userinfo(url)
    try:
        parts = urlsplit(url)
    except (TypeError, ValueError):
        return '<invalid URL>'
    query = parts.query
    if query:
        pairs = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if _SECRET_PARAMS.search(name):
                value = REDACTED
            pairs.append('%s=%s' % (name, value))
        query = '&'.join(pairs)
    path = parts.path
    if '@' in path and not parts.netloc:
        # A malformed URL (https:/user:token@host) parses with the userinfo in its path: drop it there too.
        path = '/' + path.rpartition('@')[2]
    return urlunsplit((parts.scheme, parts.netloc, path, query, ''))


CLOUD = 'cloud'
DATACENTER = 'datacenter'
FLAVORS = (CLOUD, DATACENTER)
_DATACENTER_API_RE = re.compile(r'/rest/api/(?:1\.0|latest)/*$')


def api_flavor(api_url):
    """'datacenter' when api_url is a Bitbucket Data Center REST root (.../rest/api/1.0 or /latest), else 'cloud'."""
    if not isinstance(api_url, str):
        return CLOUD
    try:
        path = urlsplit(api_url.strip()).path
    except ValueError:
        return CLOUD
    return DATACENTER if _DATACENTER_API_RE.search(path) else CLOUD


def datacenter_base(api_url):
    """The Data Center base URL (scheme, host, context path) of a REST root URL, without a trailing slash."""
    parts = urlsplit(api_url.strip())
    path = _DATACENTER_API_RE.sub('', parts.path)
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip('/'), '', ''))


def is_loopback(hostname):
    """127.0.0.0/8, ::1 or localhost: traffic to them never leaves the machine."""
    if hostname.lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_url(name, value):
    """Return value if it is an absolute https:// URL with a host and no credentials in it.

    http:// is accepted for a loopback host only: anywhere else the credentials would cross the
    network in clear text.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError('%s must be an absolute https:// URL, got %r' % (name, value))
    value = value.strip()
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValidationError("%s must be an absolute https:// URL, got '%s'" % (name, safe_url(value)))
    if port == 0:
        raise ValidationError("%s must not use port 0, got '%s'" % (name, safe_url(value)))
    if parts.scheme not in ('https', 'http') or not hostname:
        raise ValidationError("%s must be an absolute https:// URL, got '%s'" % (name, safe_url(value)))
    if '@' in parts.netloc:
        raise ValidationError("%s must not contain credentials; use the authentication options instead, got '%s'"
                              % (name, safe_url(value)))
    if parts.fragment:
        raise ValidationError("%s must not contain a #fragment, got '%s'" % (name, safe_url(value)))
    if parts.scheme == 'http' and not is_loopback(hostname):
        raise ValidationError("%s must be an https:// URL: over http:// the credentials would cross the network in clear "
                              "text (http:// is accepted only for 127.0.0.1, ::1 and localhost), got '%s'"
                              % (name, safe_url(value)))
    return value


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


# ---------------------------------------------------------------------------------------------
# Server text in messages


def has_control_chars(value):
    """Whitespace or control characters: invalid in a header value, and http.client's error would quote it."""
    return bool(CONTROL_CHARS.search(value))


def redact(text, secrets):
    """text with every secret replaced by REDACTED, also in the encodings a server may echo back.

    Server-provided text (error bodies) is the one part of a message that shared code does not
    build itself; a server or proxy that echoes the request would quote the secrets as they
    were sent: raw, percent-encoded in a form body, inside a Basic credential, or JSON-escaped.
    """
    forms = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 4:
            escaped = json.dumps(secret)[1:-1]
            forms.update((secret, quote(secret, safe=''), quote(secret), quote_plus(secret), escaped,
                          escaped.replace('/', '\\/')))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def quote_server_text(text, secrets=(), limit=300):
    """Server-provided text made fit for a message: secrets redacted, controls made spaces, at most limit characters.

    Redaction comes first, so that cutting the text can never leave part of a secret behind.
    """
    text = redact(text or '', secrets)
    # Whitespace may have hidden a secret from the first pass ("sec\\nret" becomes "sec ret").
    text = redact(' '.join(_UNPRINTABLE.sub(' ', text).split()), secrets)
    if len(text) > limit:
        text = text[:max(limit - 3, 0)] + '...'
    return text


_BOMS = (
    (b'\xef\xbb\xbf', 'utf-8-sig'),
    (b'\xff\xfe\x00\x00', 'utf-32'),
    (b'\x00\x00\xfe\xff', 'utf-32'),
    (b'\xff\xfe', 'utf-16'),
    (b'\xfe\xff', 'utf-16'),
)


def _printable_share(text):
    return sum(1 for char in text if ' ' <= char <= '~' or char in '\t\r\n') / float(len(text) or 1)


def decode_body(body):
    """The text of a response body, or None when it cannot be decoded with confidence.

    A server that echoes the request may answer in UTF-16 or UTF-32, with or without a BOM; the
    secrets are only found (and redacted) in the decoded text. Without a BOM, NUL bytes tell the
    wide encodings apart from UTF-8, and the decoding that gives mostly ASCII wins. Bytes that
    are no text at all give None, so that nothing derived from them is quoted.
    """
    if isinstance(body, str):
        return body if '\x00' not in body else None
    body = body or b''
    candidates = [codec for bom, codec in _BOMS if body.startswith(bom)][:1]
    if not candidates:
        candidates = ['utf-8'] if b'\x00' not in body else ['utf-32-le', 'utf-32-be', 'utf-16-le', 'utf-16-be']
    best, best_share = None, 0.0
    for codec in candidates:
        try:
            text = body.decode(codec)
        except UnicodeDecodeError:
            continue
        if '\x00' in text:
            continue
        if len(candidates) == 1:
            return text
        share = _printable_share(text)
        if share > best_share:
            best, best_share = text, share
    return best if best_share >= 0.5 else None


# ---------------------------------------------------------------------------------------------
# Retries


class RetryPolicy(object):
    """Bounded exponential backoff with jitter; tests pass sleep=lambda s: None."""

    def __init__(self, max_retries=5, base=0.5, cap=8.0, retry_after_cap=60.0, sleep=None, rand=None):
        self.max_retries = max_retries
        self.base = base
        self.cap = cap
        self.retry_after_cap = retry_after_cap
        self.sleep = sleep if sleep is not None else time.sleep
        self.rand = rand if rand is not None else random.random

    def delay(self, attempt, retry_after=None):
        """Seconds to wait before retry number attempt (0-based)."""
        if retry_after is not None:
            # A task must not hang for the hours a server may ask for: wait at most the cap.
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.cap, self.base * (2 ** attempt))
        # "Equal jitter": never less than half the backoff, so a retry storm still spreads out.
        return ceiling / 2.0 + self.rand() * ceiling / 2.0


def parse_retry_after(value, now=None):
    """Retry-After as seconds (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def gave_up_note(retries, headers=None, policy=None):
    """' (gave up after N retries)' for the message of a failure that outlasted the retries, else ''.

    With the headers of the last answer and the policy, it also says when the server asked to
    wait longer than the policy ever waits, which is why retrying did not help.
    """
    if not retries:
        return ''
    note = 'gave up after %d retries' % retries
    asked = parse_retry_after((headers or {}).get('retry-after'))
    if policy is not None and asked is not None and asked > policy.retry_after_cap:
        note += '; the server asked to wait %.0f s (Retry-After), longer than the %.0f s this client waits' % (
            asked, policy.retry_after_cap)
    return ' (%s)' % note


def send_with_retries(send, policy, method, url, retry_transport=True):
    """Call send() until it gives a non-retryable answer.

    send() returns (status, headers, body) or raises TransportError. 429/502/503/504 and
    dropped connections are retried up to policy.max_retries times. Returns the last answer
    and the number of retries made; a TransportError that outlasts the retries is re-raised.
    """
    attempt = 0
    while True:
        try:
            status, headers, body = send()
        except TransportError as exc:
            if not (retry_transport and exc.retryable) or attempt >= policy.max_retries:
                if attempt:
                    exc.message += gave_up_note(attempt)
                    exc.args = (exc.message,)
                raise
            policy.sleep(policy.delay(attempt))
            attempt += 1
            continue
        if status not in RETRY_STATUSES or attempt >= policy.max_retries:
            return status, headers, body, attempt
        policy.sleep(policy.delay(attempt, parse_retry_after(headers.get('retry-after'))))
        attempt += 1


# ---------------------------------------------------------------------------------------------
# Transport failures


_DROPPED_MARKERS = ('connection reset', 'remote end closed', 'closed before a valid response', 'incompleteread',
                    'incomplete read', 'broken pipe', 'eof occurred', 'connection aborted', 'remotedisconnected')
_DNS_MARKERS = ('name or service not known', 'nodename nor servname', 'getaddrinfo', 'temporary failure in name resolution',
                'no address associated')
# What OpenSSL says when the other end answers a TLS handshake in plain HTTP.
_PLAIN_HTTP_MARKERS = ('wrong version number', 'wrong_version_number', 'record layer failure', 'record_layer_failure',
                       'packet length too long', 'packet_length_too_long', 'unknown protocol')
# fetch_url()'s message for http.client.BadStatusLine; what follows is the server's line.
_BAD_STATUS_LINE = re.compile(r'closed before a valid response was received: (.*)', re.DOTALL)

_NOT_HTTPS = 'does not speak HTTPS (it answered in plain HTTP)'
_ONLY_HTTPS = 'speaks only HTTPS, not plain HTTP'


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
    if any(marker in lowered for marker in _PLAIN_HTTP_MARKERS):
        return 'scheme', _NOT_HTTPS
    if 'connection refused' in lowered or 'errno 111' in lowered:
        return 'refused', 'connection refused'
    if 'timed out' in lowered or 'timeout' in lowered:
        return 'timeout', 'timed out'
    match = _BAD_STATUS_LINE.search(text)
    if match:
        return 'other', 'the answer is not HTTP: malformed status line %s' % match.group(1)
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
    if isinstance(reason, http.client.BadStatusLine):
        return 'other', 'the answer is not HTTP: malformed status line %s' % reason.line
    if isinstance(reason, socket.gaierror):
        return 'dns', 'could not resolve the host name'
    return _classify('%s: %s' % (type(reason).__name__, reason))


def transport_error(method, url, kind, description, timeout=None, secrets=()):
    if kind == 'timeout' and timeout:
        description = 'timed out after %s seconds (raise timeout if the server is slow)' % timeout
    elif kind == 'scheme':
        description = "the server at %s %s; check the URL's scheme and port" % (_host_port(url), description)
    else:
        # The description may quote the server (a malformed status line) or a library's message.
        description = quote_server_text(description, secrets)
    return TransportError('%s %s: %s' % (method, safe_url(url), description), kind=kind, url=safe_url(url), method=method)


def _host_port(url):
    parts = urlsplit(url)
    return '%s:%s' % (parts.hostname, parts.port or (443 if parts.scheme == 'https' else 80))


def _speaks_tls(url, timeout):
    """Whether the host and port of an http:// URL complete a TLS handshake.

    A TLS server drops a plain-HTTP request without an answer, which looks like a dropped
    connection and would be retried; this probe (a handshake, nothing sent) tells the two apart.
    """
    parts = urlsplit(url)
    context = ssl.create_default_context()
    # Only the handshake matters here; no request, header or credential goes over this connection.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=parts.hostname):
                return True
    except (OSError, ValueError):
        return False


def request_secrets(headers, data):
    """The secrets a request carries: credentials in its Authorization header, secret fields of its form."""
    secrets = []
    for name, value in headers.items():
        if name.lower() not in ('authorization', 'proxy-authorization') or not isinstance(value, str):
            continue
        scheme, dummy, credential = value.partition(' ')
        secrets.append(credential)
        if scheme.lower() == 'basic':
            try:
                pair = base64.b64decode(credential, validate=True).decode('utf-8')
            except (binascii.Error, ValueError):
                continue
            secrets.extend((pair, pair.partition(':')[2]))
    if data:
        try:
            form = parse_qsl(data.decode('utf-8') if isinstance(data, bytes) else data, keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            form = []
        secrets.extend(value for name, value in form if _SECRET_PARAMS.search(name))
    return [secret for secret in secrets if secret]


def _redirect_error(method, url, status, headers, secrets):
    location = headers.get('location')
    if location:
        try:
            # Redacted before safe_url() decodes the query, which would turn a '+' in a secret into a space.
            target = safe_url(urljoin(url, redact(location.strip(), secrets)))
        except ValueError:
            target = '<invalid URL>'
        what = 'refusing to follow a redirect to %s' % quote_server_text(target, secrets, limit=200)
    else:
        what = 'refusing a redirect status'
    message = ('%s %s: HTTP %s: %s; the Bitbucket token endpoint and REST API do not redirect, so check token_url '
               'and api_url' % (method, safe_url(url), status, what))
    return RedirectError(message, status=status, url=safe_url(url), method=method)


def _lower_headers(items):
    headers = {}
    for name, value in items:
        name = name.lower()
        headers[name] = '%s, %s' % (headers[name], value) if name in headers else value
    return headers


# ---------------------------------------------------------------------------------------------
# The helper and its two backends


class HttpHelper(object):
    """Common options; subclasses implement _send().

    warnings: messages about insecure settings, for the front end to show.
    """

    def __init__(self, validate_certs=True, ca_path=None, timeout=30):
        # Checked here, once for every front end, before anything is sent.
        validate_timeout(timeout)
        if ca_path and validate_certs:
            check_ca_path(ca_path)
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.warnings = [] if validate_certs else [INSECURE_WARNING]

    def request(self, method, url, headers=None, data=None):
        """Send one request; return (status, headers with lower-case names, body bytes).

        Raises TransportError without a response, and RedirectError on any 3xx: a redirect is
        never followed, so no credential can leave the origin it was meant for.
        """
        if isinstance(data, str):
            data = data.encode('utf-8')
        headers = dict(headers or {})
        for name, value in headers.items():
            if isinstance(value, str) and _HEADER_BREAKING.search(value):
                # http.client would refuse it with an error that quotes the value (a token, say).
                raise ValidationError('%s %s: the %s header has control characters; refusing to send it'
                                      % (method, safe_url(url), name))
        secrets = request_secrets(headers, data)
        try:
            status, resp_headers, body = self._send(method, url, headers, data, secrets)
        except TransportError as exc:
            if (exc.kind in ('dropped', 'other') and urlsplit(url).scheme == 'http'
                    and _speaks_tls(url, min(self.timeout, 5))):
                raise transport_error(method, url, 'scheme', _ONLY_HTTPS)
            raise
        if 300 <= status < 400:
            raise _redirect_error(method, url, status, resp_headers, secrets)
        return status, resp_headers, body

    def _send(self, method, url, headers, data, secrets):
        raise NotImplementedError

    def _read(self, response, method, url, secrets):
        try:
            return response.read()
        except Exception as exc:  # the body read is where dropped connections show up
            kind, description = _exception_kind(exc)
            raise transport_error(method, url, kind, description, self.timeout, secrets)


class _RedirectlessModule(object):
    """The module as fetch_url() sees it: fetch_url() takes follow_redirects only from module.params."""

    def __init__(self, module):
        self._module = module
        self.params = dict(module.params, follow_redirects='none')

    def __getattr__(self, name):
        return getattr(self._module, name)


class ModuleHttp(HttpHelper):
    """Backend for modules: fetch_url(), which also honours the module's proxy settings."""

    def __init__(self, module, validate_certs=True, ca_path=None, timeout=30):
        super(ModuleHttp, self).__init__(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
        self.module = module

    def _send(self, method, url, headers, data, secrets):
        # fetch_url() reads validate_certs from module.params; the module and this helper agree.
        response, info = fetch_url(_RedirectlessModule(self.module), url, data=data, headers=headers, method=method,
                                   timeout=self.timeout, ca_path=self.ca_path, use_netrc=False)
        status = info.get('status', -1)
        if status is None or status < 0:
            kind, description = _classify(str(info.get('msg') or ''))
            raise transport_error(method, url, kind, description, self.timeout, secrets)
        resp_headers = _lower_headers((k, v) for k, v in info.items()
                                      if k not in _INFO_KEYS and isinstance(v, str))
        if status >= 300 or response is None:
            # A redirect or an error: fetch_url() has read the body into info already.
            body = info.get('body') or b''
            if isinstance(body, str):
                body = body.encode('utf-8')
            return status, resp_headers, body
        return status, resp_headers, self._read(response, method, url, secrets)


class PluginHttp(HttpHelper):
    """Backend for controller plugins (the lookup): open_url()."""

    def _send(self, method, url, headers, data, secrets):
        try:
            response = open_url(url, data=data, headers=headers, method=method, timeout=self.timeout,
                                validate_certs=self.validate_certs, ca_path=self.ca_path, use_netrc=False,
                                follow_redirects='none')
        except HTTPError as exc:
            try:
                body = exc.read() if exc.fp is not None else b''
            except Exception:
                body = b''
            return exc.code, _lower_headers(exc.headers.items() if exc.headers else ()), body
        except Exception as exc:
            kind, description = _exception_kind(exc)
            raise transport_error(method, url, kind, description, self.timeout, secrets)
        try:
            body = self._read(response, method, url, secrets)
            return response.status, _lower_headers(response.headers.items()), body
        finally:
            response.close()


def url_secrets(entries):
    """Credentials that a careless user wrote into repository URLs, so the front end can mask them in output."""
    found = set()
    for entry in entries or []:
        url = entry.get('url') if isinstance(entry, dict) else None
        if not isinstance(url, str):
            continue
        netloc = url.partition('://')[2].partition('/')[0]
        if '@' not in netloc:
            continue
        userinfo = netloc.rpartition('@')[0]
        password = userinfo.partition(':')[2]
        found.update(value for value in (userinfo, password, unquote(password)) if len(value) >= 4)
    return found
