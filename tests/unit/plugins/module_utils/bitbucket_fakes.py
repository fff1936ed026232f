# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Test doubles for the narrow module_utils units: an HTTP helper answering from a script, a token endpoint."""

from __future__ import annotations

import base64
import json
import threading

from urllib.parse import parse_qs


def reply(status=200, body=None, headers=None, content_type='application/json'):
    """One scripted answer: (status, headers, body bytes)."""
    all_headers = {'content-type': content_type}
    all_headers.update(headers or {})
    if body is None:
        raw = b''
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode('utf-8')
    else:
        raw = json.dumps(body).encode('utf-8')
    return status, all_headers, raw


class FakeHttp(object):
    """request() answers from handler(method, url, headers, data); records every call (thread-safe)."""

    def __init__(self, handler):
        self.handler = handler
        self.calls = []
        self._lock = threading.Lock()

    def request(self, method, url, headers=None, data=None):
        with self._lock:
            self.calls.append((method, url, dict(headers or {}), data))
        answer = self.handler(method, url, dict(headers or {}), data)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Sequence(object):
    """A handler giving the scripted answers in order (exceptions are raised), then the last forever."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.index = 0

    def __call__(self, method, url, headers, data):
        answer = self.answers[min(self.index, len(self.answers) - 1)]
        self.index += 1
        return answer


class NoSleep(object):
    """Records the delays a RetryPolicy asked for instead of sleeping."""

    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


# The demo consumer of the emulator's data, used by the token layer tests.
CLIENT_ID = 'demoKey1234567890ab'
SECRET = 'demoSecret+With/Odd=Chars0123456789'


def form_of(data):
    """A form-encoded request body as a dict of single values."""
    return dict((key, values[0]) for key, values in parse_qs(data if isinstance(data, str) else data.decode()).items())


class FakeTokenServer(object):
    """A token endpoint: counts grants, optionally rotates refresh tokens, rejects listed ones.

    secrets: the client secrets it accepts for CLIENT_ID (two while a secret is being rotated).
    Every authorization code in codes is accepted, as often as it is sent.
    """

    def __init__(self, rotate=True, cc_refresh=False, scope_key='scope', dead_refresh=(), secrets=(SECRET,),
                 codes=('good-code',)):
        self.rotate = rotate
        self.cc_refresh = cc_refresh
        self.scope_key = scope_key
        self.dead = set(dead_refresh)
        self.secrets = set(secrets)
        self.codes = set(codes)
        self.grants = []
        self.forms = []
        self.serial = 0

    def _authenticated(self, headers):
        accepted = ['Basic ' + base64.b64encode(('%s:%s' % (CLIENT_ID, secret)).encode()).decode() for secret in self.secrets]
        return headers.get('Authorization') in accepted

    def __call__(self, method, url, headers, data):
        form = form_of(data)
        self.forms.append(form)
        if not self._authenticated(headers):
            return reply(400, {'error_description': 'Invalid OAuth client credentials', 'error': 'unauthorized_client'})
        grant = form.get('grant_type')
        self.grants.append((grant, form.get('refresh_token') or form.get('code')))
        self.serial += 1
        body = {'access_token': 'at-%d' % self.serial, 'token_type': 'bearer', 'expires_in': 7200,
                self.scope_key: 'repository account', 'state': grant}
        if grant == 'refresh_token':
            if form['refresh_token'] in self.dead:
                return reply(400, {'error_description': 'Invalid refresh_token', 'error': 'invalid_request'})
            if self.rotate:
                self.dead.add(form['refresh_token'])
                body['refresh_token'] = 'rt-%d' % self.serial
            else:
                body['refresh_token'] = form['refresh_token']
        elif grant == 'authorization_code':
            if form.get('code') not in self.codes:
                return reply(400, {'error': 'invalid_grant'})
            body['refresh_token'] = 'rt-%d' % self.serial
        elif grant == 'client_credentials':
            if self.cc_refresh:
                body['refresh_token'] = 'rt-%d' % self.serial
        else:
            return reply(400, {'error_description': 'Unsupported grant type: None', 'error': 'invalid_grant'})
        return reply(200, body)
