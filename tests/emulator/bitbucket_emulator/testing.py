"""Run the emulator as a subprocess from tests, the demo and benchmarks.

    with Emulator() as emu:
        emu.reset()
        ... requests to emu.token_url / emu.api_url with verify=emu.ca_file ...
        assert emu.stats()["requests"]["token"] == 1
"""

import json
import os
import pathlib
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import yaml

from .data import DEMO_DATA
from .dcdata import DATACENTER_DATA

_PACKAGE_PARENT = str(pathlib.Path(__file__).resolve().parent.parent)


def load_datacenter_data():
    """The bundled Data Center data as a dict."""
    with open(DATACENTER_DATA, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


class EmulatorError(RuntimeError):
    """The emulator did not start, or a control request failed."""


def load_demo_data():
    """The bundled demo data as a dict."""
    with open(DEMO_DATA, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


class Emulator:
    """A `bitbucket-emulator serve` subprocess on a free port; a context manager.

    data is None (the flavour's bundled data), a path to a YAML file, or a dict (written to the state dir).
    flavor is "cloud" or "datacenter". Without state_dir a temporary one is made and removed by stop().
    """

    def __init__(self, data=None, mode="current", latency_ms=0, state_dir=None, startup_timeout=30.0, flavor="cloud"):
        self.flavor = flavor
        self.data = data
        self.mode = mode
        self.latency_ms = latency_ms
        self.state_dir = str(state_dir) if state_dir is not None else None
        self._own_state_dir = state_dir is None
        self.startup_timeout = startup_timeout
        self.process = None
        self.info = {}
        self._stderr = None

    # --- the URLs from the emulator's ready line ----------------------------------------

    @property
    def base_url(self):
        """https://127.0.0.1:PORT"""
        return self.info["base_url"]

    @property
    def api_url(self):
        """The REST API root (.../2.0)."""
        return self.info["api_url"]

    @property
    def token_url(self):
        """The OAuth token endpoint."""
        return self.info["token_url"]

    @property
    def authorize_url(self):
        """The OAuth authorize endpoint (Data Center; Cloud: /site/oauth2/authorize)."""
        return self.info.get("authorize_url") or self.base_url + "/site/oauth2/authorize"

    @property
    def git_url(self):
        """Where git remotes live (Cloud: BASE/<workspace>/<slug>.git; Data Center: BASE/scm/<key>/<slug>.git)."""
        return self.info["git_url"]

    @property
    def ca_file(self):
        """The CA certificate (PEM) to trust."""
        return self.info["ca_file"]

    def git_env(self, base=None):
        """An environment for git commands: trust the emulator's CA and never prompt.

        GIT_SSL_CAINFO is set because it overrides `-c http.sslCAInfo`, and CI machines often set it.
        """
        env = dict(os.environ if base is None else base)
        env.update({"GIT_SSL_CAINFO": self.ca_file, "GIT_TERMINAL_PROMPT": "0"})
        return env

    # --- life cycle ------------------------------------------------------------------------

    def start(self):
        """Start the server and wait for its ready line; returns self."""
        if self.process is not None and self.process.poll() is None:
            return self
        if self._own_state_dir:
            self.state_dir = tempfile.mkdtemp(prefix="bitbucket-emulator-")
        os.makedirs(self.state_dir, exist_ok=True)
        args = [sys.executable, "-m", "bitbucket_emulator", "serve", "--flavor", self.flavor, "--state-dir", self.state_dir,
                "--mode", self.mode, "--latency-ms", str(int(self.latency_ms))]
        data_path = self._data_path()
        if data_path is not None:
            args += ["--data", data_path]
        env = dict(os.environ)
        # Importable even when the package is not installed in this interpreter.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_PARENT, env.get("PYTHONPATH"))))
        # stderr goes to a file, not a pipe nobody reads (a full pipe would block the server).
        self._stderr = open(os.path.join(self.state_dir, "stderr.log"), "w+b")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
        )
        line = self._ready_line()
        try:
            self.info = json.loads(line)
        except ValueError:
            raise self._failure("printed %r instead of its JSON ready line" % line[:200]) from None
        return self

    def _data_path(self):
        if self.data is None:
            return None
        if isinstance(self.data, dict):
            path = os.path.join(self.state_dir, "data.yml")
            with open(path, "w", encoding="utf-8") as handle:
                yaml.safe_dump(self.data, handle, sort_keys=False)
            return path
        return str(self.data)

    def _ready_line(self):
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise self._failure("did not start within %.0f s" % self.startup_timeout) from None
        if not line:
            raise self._failure("exited with code %s" % self.process.wait(timeout=10))
        return line.decode("utf-8", "replace").strip()

    def _failure(self, what):
        """Stop what is left of the process and describe the failure with the server's stderr."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", "replace").strip()
        self._cleanup()
        return EmulatorError("bitbucket-emulator %s; stderr: %s" % (what, stderr or "(empty)"))

    def stop(self):
        """Stop the server with SIGTERM; returns its exit code (None if it was never started).

        A temporary state dir is removed; process keeps the finished Popen."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self._cleanup()
        return code

    def _cleanup(self):
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._own_state_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # --- test controls ---------------------------------------------------------------------

    def _open(self, method, path, payload=None):
        context = ssl.create_default_context(cafile=self.ca_file)
        # No proxies: the emulator is on loopback and proxy variables must not reroute it.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers={"Content-Type": "application/json"})
        try:
            with opener.open(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise EmulatorError("%s %s: HTTP %d: %s" % (method, path, err.code, err.read().decode("utf-8", "replace"))) from None

    def control(self, name, payload=None):
        """POST /_emulator/<name> with a JSON payload; returns the JSON answer."""
        return self._open("POST", "/_emulator/" + name, payload if payload is not None else {})

    def stats(self):
        """{"requests": {"token", "api", "git", "archive"}, "tokens": [...every token issued...]}"""
        return self._open("GET", "/_emulator/stats")

    def reset(self):
        """Zero the request counters (tokens stay valid)."""
        return self.control("reset")

    def expire(self):
        """Expire every access token issued so far."""
        return self.control("expire")

    def fault(self, **spec):
        """Queue a fault, e.g. fault(path_prefix="/2.0/repositories", status=429, count=3)."""
        return self.control("faults", spec)

    def clear_faults(self):
        """Drop every queued fault."""
        return self.control("faults", {"clear": True})

    def latency(self, ms):
        """Add ms milliseconds to every later request."""
        return self.control("latency", {"ms": ms})

    def commit(self, repository, files, branch=None, message="Update files"):
        """Add a commit upstream, as a push would: commit("acme/api", {"path": "content"}) (Data Center:
        commit("OPS/deploy", ...)); returns its hash."""
        payload = {"repository": repository, "files": files, "message": message}
        if branch is not None:
            payload["branch"] = branch
        return self.control("commit", payload)["commit"]
