# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bitbucket REST client (Cloud 2.0 and Data Center 1.0): JSON, typed errors, retries, pagination."""

from __future__ import annotations

import json
import math
import re
import threading

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ValidationError,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import (
    DATACENTER,
    RetryPolicy,
    api_flavor,
    decode_body,
    gave_up_note,
    quote_server_text,
    safe_url,
    send_with_retries,
    validate_url,
)

PAGELEN = 100
MAX_PARALLEL_PAGES = 8
# Data Center caps a larger limit to its configured maximum and answers with the limit it used.
DC_LIMIT = 1000
# Pages computed from a Data Center `size`; beyond this the client follows nextPageStart instead.
MAX_COMPUTED_PAGES = 1000

_WORKSPACE_OR_REPOSITORY_SLUG_RE = re.compile(
    r'^(?:[A-Za-z0-9_.-]+|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\})$')
# Data Center project keys start with a letter; personal projects are ~username.
_PROJECT_KEY_RE = re.compile(r'^(?:[A-Za-z][A-Za-z0-9_]*|~[A-Za-z0-9_.@-]+)$')
_EXPIRED_RE = re.compile(r'access token expired', re.IGNORECASE)

NOT_AN_API_ROOT = ('; the URL may not be a Bitbucket REST API root (does api_url end in /2.0, '
                   'or in /rest/api/1.0 for Data Center?)')


# ---------------------------------------------------------------------------------------------
# Input validation shared by every front end


def validate_slug(name, value):
    """Workspace and repository identifiers: a slug or a {uuid}."""
    if not isinstance(value, str) or not value:
        raise ValidationError('%s must be a non-empty slug, got %r' % (name, value))
    if not _WORKSPACE_OR_REPOSITORY_SLUG_RE.match(value):
        raise ValidationError("%s must be a slug (letters, digits, '-', '_', '.') or a {uuid}, got %r" % (name, value))
    return value


def validate_project_key(name, value):
    """A Data Center project key (what `workspace` means there), such as OPS or ~alice."""
    if not isinstance(value, str) or not _PROJECT_KEY_RE.match(value):
        raise ValidationError("%s must be a Data Center project key (a letter, then letters, digits or '_'; "
                              "or ~username), got %r" % (name, value))
    return value


# ---------------------------------------------------------------------------------------------
# Responses


def error_message(status, headers, body, secrets=()):
    """The server's explanation of an error response, from the JSON envelope or the text.

    secrets: values the request carried; a server that echoes one gets it redacted. The result
    is bounded, and a body that cannot be decoded with confidence is described, not quoted.
    """
    return explain(headers, body, secrets)[0]


def explain(headers, body, secrets=()):
    """(error_message(), whether the body was a Bitbucket error envelope)."""
    content_type = quote_server_text(headers.get('content-type') or '', secrets, limit=100)
    text = decode_body(body)
    if text is None:
        return 'a response body that is not text (%d bytes, content type %s), not shown' % (
            len(body), content_type or 'not given'), False
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = _envelope_message(data)
        if message is not None:
            return quote_server_text(message, secrets), True
        error = data.get('error')
        if isinstance(error, str):
            description = data.get('error_description')
            return quote_server_text('%s: %s' % (error, description) if description else error, secrets), False
    if data is not None:
        # Re-encoded without escapes, so that a secret sent back as JSON-escaped text is redacted too.
        text = json.dumps(data, ensure_ascii=False)
    elif 'html' in content_type.lower() or text.lstrip()[:1] == '<':
        return 'unexpected HTML response (%s)' % (content_type or 'no content type'), False
    return quote_server_text(text, secrets) or 'no response body', False


def _envelope_message(data):
    """The message of a Bitbucket error envelope (Cloud or Data Center), or None."""
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
                problems.append('%s: %s' % (field, ' '.join(str(v) for v in value) if isinstance(value, list) else value))
            message = '%s [%s]' % (message, '; '.join(problems))
        return message
    if isinstance(data.get('errors'), list) and data['errors']:  # Bitbucket Data Center envelope
        return '; '.join(str(item.get('message', item)) if isinstance(item, dict) else str(item) for item in data['errors'])
    return None


def parse_json(method, url, status, body):
    try:
        return json.loads(body.decode('utf-8') if isinstance(body, bytes) else body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError('%s %s: HTTP %s: the response is not valid JSON' % (method, safe_url(url), status),
                            status=status, url=safe_url(url), method=method)


def raise_for_status(method, url, status, headers, body, retries=0, secrets=(), policy=None):
    """Raise the typed error for an error status; policy (a RetryPolicy) lets the message say why retries failed."""
    if status < 400:
        return
    server_message, enveloped = explain(headers, body, secrets)
    message = '%s %s: HTTP %s: %s' % (method, safe_url(url), status, server_message)
    if status == 404 and not enveloped:
        # Bitbucket answers every 404 with an envelope; a bare one comes from a server that is not its API.
        message += NOT_AN_API_ROOT
    message += gave_up_note(retries, headers, policy)
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


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def dc_page_state(method, url, page, start):
    """(values, next start or None) of a Data Center page requested at start; ProtocolError if malformed."""
    if not isinstance(page, dict) or not isinstance(page.get('values'), list):
        raise ProtocolError('%s %s: the response is not a paginated collection' % (method, safe_url(url)), url=safe_url(url))
    last = page.get('isLastPage')
    if last is None:
        last = 'nextPageStart' not in page
    if not isinstance(last, bool):
        raise ProtocolError('%s %s: isLastPage is a JSON %s, not a boolean' % (method, safe_url(url), type(last).__name__),
                            url=safe_url(url))
    if last:
        return page['values'], None
    next_start = _int(page.get('nextPageStart'))
    if next_start is None:
        raise ProtocolError('%s %s: isLastPage is false but nextPageStart is not a number' % (method, safe_url(url)),
                            url=safe_url(url))
    if next_start <= start:
        # A server that sends the same start again would keep the client paging forever.
        raise ProtocolError('%s %s: nextPageStart %d does not advance past start %d' % (method, safe_url(url), next_start, start),
                            url=safe_url(url))
    return page['values'], next_start


def dc_remaining_starts(page, start=0):
    """Starts of the remaining Data Center pages when the page says how many values there are, else None.

    Data Center's `size` usually counts the values of the page; only when it reports more than the
    page holds, with a known `limit` and a nextPageStart one full page on, are the pages computable.
    """
    if not isinstance(page, dict) or page.get('isLastPage') is not False or not isinstance(page.get('values'), list):
        return None
    size, limit, next_start = _int(page.get('size')), _int(page.get('limit')), _int(page.get('nextPageStart'))
    held = len(page['values'])
    if size is None or limit is None or next_start is None or limit < 1:
        return None
    if size <= held or held != limit or next_start != start + limit:
        return None
    starts = list(range(next_start, size, limit))
    if not starts or len(starts) > MAX_COMPUTED_PAGES:
        return None
    return starts


# ---------------------------------------------------------------------------------------------
# The client


class BitbucketClient(object):
    """REST calls with an auth method (see _auth) and one HttpHelper.

    flavor ('cloud' or 'datacenter') follows from api_url; only pagination differs between them.
    """

    def __init__(self, http, api_url, auth, retry=None, max_workers=MAX_PARALLEL_PAGES):
        self.http = http
        self.api_url = validate_url('api_url', api_url).rstrip('/')
        if '?' in self.api_url:
            # Request paths are appended to api_url; a query there would swallow them.
            raise ValidationError("api_url must not contain a query string, got '%s'" % safe_url(self.api_url))
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.max_workers = max_workers
        self.flavor = api_flavor(self.api_url)
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
            raise_for_status(method, url, status, resp_headers, body, retries, self._secrets(auth_headers), self.retry)
            if status == 204 or not body:
                return None
            return parse_json(method, url, status, body)

    def _secrets(self, auth_headers):
        # The credential part of each header (a Basic pair is only there, base64-encoded) and the raw secrets.
        return [value.partition(' ')[2] for value in auth_headers.values()] + self.auth.secrets()

    def get(self, *segments, **params):
        return self.request('GET', self.url(*segments, **params))

    def parallel(self, function, items):
        """[function(item) for item in items], up to max_workers at a time; the first error is raised."""
        items = list(items)
        workers = min(self.max_workers, len(items))
        if workers > 1:
            pool = ThreadPoolExecutor(max_workers=workers)
            futures = []
            try:
                futures.extend(pool.submit(function, item) for item in items)
                return [future.result() for future in futures]
            finally:
                # After the first error the requests not yet sent are dropped: they would only cost rate limit.
                for future in futures:
                    future.cancel()
                pool.shutdown(wait=True)
        return [function(item) for item in items]

    def paginate(self, *segments, **params):
        """All values of a paginated collection, in order."""
        if self.flavor == DATACENTER:
            return self._paginate_datacenter(segments, params)
        return self._paginate_cloud(segments, params)

    def _paginate_cloud(self, segments, params):
        params['pagelen'] = PAGELEN
        url = self.url(*segments, **params)
        first = self.request('GET', url)
        pages = [first]
        urls = remaining_page_urls(first) if isinstance(first, dict) else None
        if urls:
            for url in urls:
                self._check_origin(url)
            pages.extend(self.parallel(lambda u: self.request('GET', u), urls))
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

    def _paginate_datacenter(self, segments, params):
        # start/limit paging: ask for the largest page; the server caps limit and says so in the response.
        params = dict((key, value) for key, value in params.items() if key not in ('start', 'limit'))

        def fetch(start):
            url = self.url(*segments, limit=DC_LIMIT, start=start or None, **params)
            return url, self.request('GET', url)

        url, first = fetch(0)
        values, next_start = dc_page_state('GET', url, first, 0)
        values = list(values)
        starts = dc_remaining_starts(first)
        if starts:
            # Only the last computed page decides whether more follow (the collection may have grown).
            for start, (url, page) in zip(starts, self.parallel(fetch, starts)):
                page_values, next_start = dc_page_state('GET', url, page, start)
                values.extend(page_values)
        while next_start is not None:
            start = next_start
            url, page = fetch(start)
            page_values, next_start = dc_page_state('GET', url, page, start)
            values.extend(page_values)
        return values
