"""Test controls behind /_emulator/: request counters, queued faults, added latency, commits pushed upstream."""

import base64
import dataclasses
import re
import threading

CATEGORIES = ("token", "api", "git", "archive")


class ControlError(ValueError):
    """A bad control request; the message goes into the 400 answer."""


class Counters:
    """Requests per category, thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(CATEGORIES, 0)

    def count(self, category):
        """Count one request."""
        with self._lock:
            self._counts[category] += 1

    def snapshot(self):
        """The current counts."""
        with self._lock:
            return dict(self._counts)

    def reset(self):
        """Zero every counter."""
        with self._lock:
            self._counts = dict.fromkeys(CATEGORIES, 0)


@dataclasses.dataclass
class Fault:
    """One queued fault; each matching request consumes one of count."""

    path_prefix: str
    count: int
    status: int = None
    delay_ms: int = 0
    drop: bool = False
    headers: dict = None
    body: str = None
    body_base64: str = None
    after: int = 0

    def describe(self):
        """The fault as JSON."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value not in (None, False)}


def _int(spec, name, minimum, maximum, default=None):
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ControlError("%s must be an integer from %d to %d" % (name, minimum, maximum))
    return value


def parse_fault(spec):
    """Validate a POST /_emulator/faults body."""
    if not isinstance(spec, dict):
        raise ControlError("expected a JSON object")
    unknown = set(spec) - {"path_prefix", "status", "count", "delay_ms", "drop", "headers", "body", "body_base64", "after"}
    if unknown:
        raise ControlError("unknown keys: %s" % ", ".join(sorted(unknown)))
    prefix = spec.get("path_prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ControlError("path_prefix must be a path starting with /")
    fault = Fault(prefix, _int(spec, "count", 1, 1_000_000, 1), after=_int(spec, "after", 0, 1_000_000, 0))
    kinds = [name for name in ("status", "delay_ms", "drop") if spec.get(name) is not None and spec.get(name) is not False]
    if len(kinds) != 1:
        raise ControlError("give exactly one of status, delay_ms or drop")
    if spec.get("status") is not None:
        fault.status = _int(spec, "status", 100, 599)
    if spec.get("delay_ms") is not None:
        fault.delay_ms = _int(spec, "delay_ms", 0, 600_000)
    if spec.get("drop") is not None:
        if spec["drop"] is not True:
            raise ControlError("drop must be true")
        fault.drop = True
    headers = spec.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ControlError("headers must map header names to strings")
        fault.headers = dict(headers)
    if spec.get("body") is not None:
        if not isinstance(spec["body"], str):
            raise ControlError("body must be a string")
        fault.body = spec["body"]
    if spec.get("body_base64") is not None:
        if fault.status is None or fault.body is not None:
            raise ControlError("body_base64 goes with status and instead of body")
        try:
            base64.b64decode(spec["body_base64"], validate=True)
        except (TypeError, ValueError):
            raise ControlError("body_base64 must be base64 text") from None
        fault.body_base64 = spec["body_base64"]
    return fault


class Faults:
    """Queued faults, matched by path prefix in the order they were queued."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = []

    def add(self, fault):
        """Queue a fault."""
        with self._lock:
            self._queue.append(fault)

    def clear(self):
        """Drop every queued fault."""
        with self._lock:
            self._queue = []

    def pending(self):
        """The queued faults as JSON."""
        with self._lock:
            return [fault.describe() for fault in self._queue]

    def take(self, path):
        """Consume one use of the first fault whose prefix matches path; returns it or None.

        A fault with `after` left lets that many matching requests through first (None for each)."""
        with self._lock:
            for fault in self._queue:
                if path.startswith(fault.path_prefix):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count <= 0:
                        self._queue.remove(fault)
                    return fault
        return None


@dataclasses.dataclass
class CommitRequest:
    """A validated POST /_emulator/commit body."""

    workspace: str
    slug: str
    branch: str
    files: dict
    message: str


def _valid_path(path):
    parts = path.split("/")
    return (path and "\n" not in path and "\0" not in path and not path.startswith('"')
            and all(part not in ("", ".", "..", ".git") for part in parts))


_BRANCH_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")


def _valid_branch(name):
    # A conservative subset of git's ref name rules.
    return (bool(_BRANCH_RE.fullmatch(name)) and ".." not in name and "//" not in name and "/." not in name
            and not name.endswith(("/", ".", ".lock")))


def parse_commit(spec):
    """Validate a POST /_emulator/commit body: which branch of which repository gets which files."""
    if not isinstance(spec, dict):
        raise ControlError("expected a JSON object")
    unknown = set(spec) - {"repository", "branch", "files", "message"}
    if unknown:
        raise ControlError("unknown keys: %s" % ", ".join(sorted(unknown)))
    repository = spec.get("repository")
    if not isinstance(repository, str) or repository.count("/") != 1 or "" in repository.split("/"):
        raise ControlError("repository must be \"workspace/slug\"")
    branch = spec.get("branch")
    if branch is not None and (not isinstance(branch, str) or not _valid_branch(branch)):
        raise ControlError("branch must be a branch name")
    files = spec.get("files")
    if not isinstance(files, dict) or not files:
        raise ControlError("files must map at least one path to its content (a string, or null to delete it)")
    for path, content in files.items():
        if not _valid_path(path):
            raise ControlError("invalid file path %r: relative, without '..', '.git' or empty parts" % path)
        if content is not None and not isinstance(content, str):
            raise ControlError("the content of %s must be a string or null" % path)
    message = spec.get("message", "Update files")
    if not isinstance(message, str) or not message.strip():
        raise ControlError("message must be a non-empty string")
    workspace, slug = repository.split("/")
    return CommitRequest(workspace, slug, branch, dict(files), message)
