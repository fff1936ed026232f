# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Test doubles for the narrow module_utils units: an HTTP helper answering from a script."""

from __future__ import annotations

import json
import threading


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
