# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bitbucket Cloud REST 2.0 client: JSON, typed errors, retries, pagination."""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import threading
import time

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    TransportError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import redact, safe_url

PAGELEN = 100
MAX_PARALLEL_PAGES = 8
RETRY_STATUSES = frozenset((429, 502, 503, 504))

_WORKSPACE_RE = re.compile(r'^(?:[A-Za-z0-9_.-]+|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\})$')
_EXPIRED_RE = re.compile(r'access token expired', re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Input validation shared by every front end


def validate_url(name, value):
    """Return value if it is an absolute http(s) URL with a host and no credentials in it."""
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
    return value


def validate_slug(name, value):
    """Workspace and repository identifiers: a slug or a {uuid}."""
    if not isinstance(value, str) or not value:
        raise ValidationError('%s must be a non-empty slug, got %r' % (name, value))
    if not _WORKSPACE_RE.match(value):
        raise ValidationError("%s must be a slug (letters, digits, '-', '_', '.') or a {uuid}, got %r" % (name, value))
    return value


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
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


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
                    exc.message = '%s (gave up after %d retries)' % (exc.message, attempt)
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
# Responses


def error_message(status, headers, body, secrets=()):
    """The server's explanation of an error response, from the JSON envelope or the text.

    secrets: values the request carried; a server that echoes one gets it redacted.
    """
    return redact(_server_text(headers, body), secrets)


def _server_text(headers, body):
    content_type = (headers.get('content-type') or '').lower()
    text = body.decode('utf-8', 'replace') if isinstance(body, bytes) else (body or '')
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get('error')
        if isinstance(error, dict) and error.get('message'):
            message = str(error['message']).strip()
            if error.get('detail'):
                message = '%s (%s)' % (message, str(error['detail']).strip())
            fields = error.get('fields')
            if isinstance(fields, dict) and fields:
                problems = []
                for field in sorted(fields):
                    value = fields[field]
                    problems.append('%s: %s' % (field, ' '.join(value) if isinstance(value, list) else value))
                message = '%s [%s]' % (message, '; '.join(problems))
            return message
        if isinstance(data.get('errors'), list) and data['errors']:  # Bitbucket Data Center envelope
            return '; '.join(str(item.get('message', item)) if isinstance(item, dict) else str(item) for item in data['errors'])
        if isinstance(error, str):
            description = data.get('error_description')
            return '%s: %s' % (error, description) if description else error
    if 'html' in content_type or text.lstrip()[:1] == '<':
        return 'unexpected HTML response (%s)' % (content_type or 'no content type')
    text = ' '.join(text.split())
    if text:
        return text if len(text) <= 300 else text[:297] + '...'
    return 'no response body'


def parse_json(method, url, status, body):
    try:
        return json.loads(body.decode('utf-8') if isinstance(body, bytes) else body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError('%s %s: HTTP %s: the response is not valid JSON' % (method, safe_url(url), status),
                            status=status, url=safe_url(url), method=method)


def raise_for_status(method, url, status, headers, body, retries=0, secrets=()):
    if status < 400:
        return
    server_message = error_message(status, headers, body, secrets)
    message = '%s %s: HTTP %s: %s' % (method, safe_url(url), status, server_message)
    if retries:
        message += ' (gave up after %d retries)' % retries
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = RateLimitedError
    else:
        cls = ApiError
    raise cls(message, status=status, url=safe_url(url), method=method, server_message=server_message)


# ---------------------------------------------------------------------------------------------
# Pagination helpers


def page_url(next_url, page):
    """next_url with its page parameter set to page, everything else kept byte for byte."""
    base, sep, query = next_url.partition('?')
    fragment = ''
    if '#' in query:
        query, fragment = query.split('#', 1)
        fragment = '#' + fragment
    parts = query.split('&') if sep else []
    replaced = False
    for index, part in enumerate(parts):
        if part.split('=', 1)[0] == 'page':
            parts[index] = 'page=%d' % page
            replaced = True
    if not replaced:
        return None
    return '%s?%s%s' % (base, '&'.join(parts), fragment)


def remaining_page_urls(first):
    """URLs of pages 2..N when the first page says how many there are, else None."""
    next_url = first.get('next')
    size = first.get('size')
    pagelen = first.get('pagelen')
    if not isinstance(next_url, str) or isinstance(size, bool) or not isinstance(size, int):
        return None
    if isinstance(pagelen, bool) or not isinstance(pagelen, int) or pagelen < 1:
        return None
    count = int(math.ceil(size / float(pagelen)))
    if count < 2:
        return None
    urls = []
    for page in range(2, count + 1):
        url = page_url(next_url, page)
        if url is None:  # an opaque cursor: follow next instead
            return None
        urls.append(url)
    return urls


# ---------------------------------------------------------------------------------------------
# The client


class BitbucketClient(object):
    """REST 2.0 calls with an auth method (see _auth) and one HttpHelper."""

    def __init__(self, http, api_url, auth, retry=None, max_workers=MAX_PARALLEL_PAGES):
        self.http = http
        self.api_url = validate_url('api_url', api_url).rstrip('/')
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.max_workers = max_workers
        parts = urlsplit(self.api_url)
        self._origin = (parts.scheme, parts.netloc.lower())
        self._refresh_lock = threading.Lock()

    def url(self, *segments, **params):
        """api_url + quoted path segments ('/' in a segment becomes %2F) + query."""
        path = '/'.join(quote(str(segment), safe='') for segment in segments)
        url = '%s/%s' % (self.api_url, path)
        query = [(key, value) for key, value in sorted(params.items()) if value is not None]
        if query:
            url += '?' + urlencode(query, quote_via=quote)
        return url

    def _check_origin(self, url):
        # The Authorization header only goes to the configured API host, whatever a link says.
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise ProtocolError('refusing to follow a link to %s: it is not on %s'
                                % (safe_url(url), self.api_url), url=safe_url(url))

    def request(self, method, url, data=None, headers=None):
        """One call with retries and at most one token refresh; returns parsed JSON."""
        self._check_origin(url)
        refreshed = False
        while True:
            auth_headers = self.auth.headers()

            def send():
                all_headers = {'Accept': 'application/json'}
                all_headers.update(headers or {})
                all_headers.update(auth_headers)
                return self.http.request(method, url, headers=all_headers, data=data)

            status, resp_headers, body, retries = send_with_retries(send, self.retry, method, url)
            if (status == 401 and not refreshed and self.auth.can_refresh
                    and _EXPIRED_RE.search(error_message(status, resp_headers, body))):
                with self._refresh_lock:
                    self.auth.refresh(auth_headers)
                refreshed = True
                continue
            raise_for_status(method, url, status, resp_headers, body, retries, self._secrets(auth_headers))
            if status == 204 or not body:
                return None
            return parse_json(method, url, status, body)

    def _secrets(self, auth_headers):
        # The credential part of each header (a Basic pair is only there, base64-encoded) and the raw secrets.
        return [value.partition(' ')[2] for value in auth_headers.values()] + self.auth.secrets()

    def get(self, *segments, **params):
        return self.request('GET', self.url(*segments, **params))

    def paginate(self, *segments, **params):
        """All values of a paginated collection, in order."""
        params['pagelen'] = PAGELEN
        url = self.url(*segments, **params)
        first = self.request('GET', url)
        pages = [first]
        urls = remaining_page_urls(first) if isinstance(first, dict) else None
        if urls:
            for url in urls:
                self._check_origin(url)
            workers = min(self.max_workers, len(urls))
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    pages.extend(pool.map(lambda u: self.request('GET', u), urls))
            else:
                pages.extend(self.request('GET', u) for u in urls)
        values = []
        seen_next = set()
        while True:
            for page in pages:
                if not isinstance(page, dict) or not isinstance(page.get('values', []), list):
                    raise ProtocolError('GET %s: the response is not a paginated collection' % safe_url(url), url=safe_url(url))
                values.extend(page.get('values', []))
            # The last page can still have a next link when the collection grew meanwhile.
            next_url = pages[-1].get('next')
            if next_url and not isinstance(next_url, str):
                raise ProtocolError('GET %s: the response has a next link of type %s' % (safe_url(url), type(next_url).__name__),
                                    url=safe_url(url))
            if not next_url or next_url in seen_next:
                return values
            seen_next.add(next_url)
            pages = [self.request('GET', next_url)]
