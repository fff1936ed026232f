"""Benchmarks against the Bitbucket emulator (`make bench`): prints figures in ms and pass/fail per target.

Add a benchmark by writing a function (context) -> one sample in ms and listing it in BENCHMARKS.
"""

import atexit
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time

import requests
import yaml

from bitbucket_emulator.testing import Emulator

# The collection's module_utils, imported the way Ansible does: through ansible_collections/.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTIONS = tempfile.mkdtemp(prefix="codeferry-bench-")
atexit.register(shutil.rmtree, _COLLECTIONS, True)  # removes the symlink, never what it points to
os.makedirs(os.path.join(_COLLECTIONS, "ansible_collections", "codeferry"))
os.symlink(REPO_ROOT, os.path.join(_COLLECTIONS, "ansible_collections", "codeferry", "bitbucket"))
sys.path.insert(0, _COLLECTIONS)

# pylint: disable=wrong-import-position
from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient  # noqa: E402
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth  # noqa: E402
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import PluginHttp  # noqa: E402

# Stop taking samples once a benchmark has used this long, so `make bench` stays well under a minute.
TIME_BUDGET_S = 12.0
CLIENT_ID = "demoKey1234567890ab"
CLIENT_SECRET = "demoSecret+With/Odd=Chars0123456789"


@dataclasses.dataclass
class Context:
    """What benchmarks share: the running emulator, an HTTP session and an access token."""

    emulator: Emulator
    session: requests.Session
    token: str = ""
    scale_emulator: Emulator = None

    def get(self, url, **kwargs):
        """GET with the emulator's CA (passed per request: REQUESTS_CA_BUNDLE would beat Session.verify)."""
        return self.session.get(url, verify=self.emulator.ca_file, timeout=30, **kwargs)


def _timed(func):
    start = time.perf_counter()
    func()
    return (time.perf_counter() - start) * 1000.0


def bench_startup(context):
    """Start a second emulator with the demo data until its ready line, then stop it."""
    del context
    emulator = Emulator()
    sample = _timed(emulator.start)
    emulator.stop()
    return sample


def bench_token(context):
    """One client_credentials token request."""

    def run():
        response = context.session.post(
            context.emulator.token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET),
            verify=context.emulator.ca_file, timeout=30,
        )
        response.raise_for_status()

    return _timed(run)


def bench_list_workspace(context):
    """List every repository of acme (250+) with pagelen=100, following next."""
    headers = {"Authorization": "Bearer " + context.token}
    slugs = []

    def run():
        url = context.emulator.api_url + "/repositories/acme?pagelen=100"
        while url:
            response = context.get(url, headers=headers)
            response.raise_for_status()
            page = response.json()
            slugs.extend(repo["slug"] for repo in page["values"])
            url = page.get("next")

    sample = _timed(run)
    if len(slugs) < 250:
        raise AssertionError("listed only %d repositories" % len(slugs))
    return sample


SCALE_REPOSITORIES = 1000
SCALE_LATENCY_MS = 50
SCALE_TOKEN = "bench-workspace-access-token"


def scale_data(directory):
    """A data file with one workspace of SCALE_REPOSITORIES repositories."""
    path = os.path.join(directory, "scale.yml")
    data = {
        "users": [{"username": "alice", "email": "alice@example.com"}],
        "consumers": [],
        "workspaces": [{
            "slug": "scale", "members": ["alice"], "repositories": [],
            "access_tokens": [{"token": SCALE_TOKEN, "scopes": ["repository"]}],
            "generate_repositories": {"count": SCALE_REPOSITORIES, "prefix": "svc-", "project": "GEN"},
        }],
    }
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    return path


def bench_module_listing(context, max_workers=8):
    """repository_info's code path (BitbucketClient.paginate): 1,000 repositories, 50 ms per request."""
    emulator = context.scale_emulator
    client = BitbucketClient(PluginHttp(ca_path=emulator.ca_file), emulator.api_url, AccessTokenAuth(SCALE_TOKEN),
                             max_workers=max_workers)
    found = []
    sample = _timed(lambda: found.extend(client.paginate("repositories", "scale")))
    if len(found) != SCALE_REPOSITORIES:
        raise AssertionError("listed %d repositories, expected %d" % (len(found), SCALE_REPOSITORIES))
    return sample


@dataclasses.dataclass
class Benchmark:
    """A benchmark: how often to run it and the median it must stay under (None: figures only)."""

    name: str
    func: object
    runs: int
    target_ms: float = None


BENCHMARKS = [
    Benchmark("emulator startup (demo data)", bench_startup, 5, 3000.0),
    Benchmark("token request (client_credentials)", bench_token, 20),
    Benchmark("list 250+ repositories of acme (pagelen=100, 3 pages)", bench_list_workspace, 20, 1000.0),
    Benchmark("repository_info: 1,000 repositories at 50 ms latency", bench_module_listing, 10, 1000.0),
    Benchmark("  the same, one page at a time (for comparison)", lambda context: bench_module_listing(context, 1), 5),
]


def run_benchmark(benchmark, context):
    """Collect samples within the time budget; returns (median_ms, min_ms, max_ms, count)."""
    samples = []
    deadline = time.monotonic() + TIME_BUDGET_S
    while len(samples) < benchmark.runs and (not samples or time.monotonic() < deadline):
        samples.append(benchmark.func(context))
    return statistics.median(samples), min(samples), max(samples), len(samples)


def main():
    """Run every benchmark; exit 1 if one misses its target."""
    failed = []
    session = requests.Session()
    session.trust_env = False  # no proxies and no CA bundle from the environment
    scratch = tempfile.mkdtemp(prefix="codeferry-bench-data-")
    atexit.register(shutil.rmtree, scratch, True)
    with Emulator() as emulator, Emulator(data=scale_data(scratch), latency_ms=SCALE_LATENCY_MS) as scale_emulator:
        context = Context(emulator, session, scale_emulator=scale_emulator)
        response = session.post(
            emulator.token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET),
            verify=emulator.ca_file, timeout=30,
        )
        response.raise_for_status()
        context.token = response.json()["access_token"]
        print("%-56s %9s %9s %9s %5s  %s" % ("benchmark", "median", "min", "max", "runs", "target"))
        for benchmark in BENCHMARKS:
            median, low, high, count = run_benchmark(benchmark, context)
            if benchmark.target_ms is None:
                verdict = "-"
            elif median <= benchmark.target_ms:
                verdict = "PASS (< %.0f ms)" % benchmark.target_ms
            else:
                verdict = "FAIL (> %.0f ms)" % benchmark.target_ms
                failed.append(benchmark.name)
            print("%-56s %6.1f ms %6.1f ms %6.1f ms %5d  %s" % (benchmark.name, median, low, high, count, verdict), flush=True)
    if failed:
        print("FAILED: %s" % ", ".join(failed))
        return 1
    print("all benchmarks met their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
