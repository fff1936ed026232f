"""Pytest fixtures shared by every test suite: the Bitbucket emulator and its demo data.

Counters are not reset between tests: call emulator.reset() where a test counts requests.
"""

import pytest


@pytest.fixture(scope="session", name="emulator")
def emulator_fixture():
    """The emulator in current mode (Bitbucket since 2026-05-04) with the demo data."""
    # Imported here so suites that never use the emulator do not need it installed.
    from bitbucket_emulator.testing import Emulator

    with Emulator(mode="current") as emulator:
        yield emulator


@pytest.fixture(scope="session", name="legacy_emulator")
def legacy_emulator_fixture():
    """The emulator in legacy mode (before 2026-05-04) with the demo data."""
    from bitbucket_emulator.testing import Emulator

    with Emulator(mode="legacy") as emulator:
        yield emulator


@pytest.fixture(scope="session", name="dc_emulator")
def dc_emulator_fixture():
    """The emulator's Bitbucket Data Center flavour with its bundled data (bitbucket_emulator/data/datacenter.yml)."""
    from bitbucket_emulator.testing import Emulator

    with Emulator(flavor="datacenter") as emulator:
        yield emulator


@pytest.fixture(name="make_emulator")
def make_emulator_fixture():
    """A factory, make_emulator(**kwargs) -> started Emulator (flavor="datacenter" for Data Center);
    all are stopped after the test."""
    from bitbucket_emulator.testing import Emulator

    started = []

    def make(**kwargs):
        emulator = Emulator(**kwargs)
        started.append(emulator)
        return emulator.start()

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session", name="demo_data")
def demo_data_fixture():
    """The bundled demo data (users, consumers, workspaces) as a dict."""
    from bitbucket_emulator.testing import load_demo_data

    return load_demo_data()


@pytest.fixture(scope="session", name="dc_data")
def dc_data_fixture():
    """The bundled Data Center data (users, projects, tokens, OAuth applications) as a dict."""
    from bitbucket_emulator.testing import load_datacenter_data

    return load_datacenter_data()


@pytest.fixture(scope="module")
def evil():
    """A hostile HTTPS server on loopback (tests/hostile_server.py): redirects, echoes, odd answers."""
    from hostile_server import HostileServer

    with HostileServer() as server:
        yield server


@pytest.fixture(scope="module")
def elsewhere():
    """Where redirects point: another origin, which must never see a connection."""
    from hostile_server import HostileServer

    with HostileServer() as server:
        yield server


@pytest.fixture(scope="module")
def plain_elsewhere():
    """Where redirects to plain http:// point; never contacted either."""
    from hostile_server import HostileServer

    with HostileServer(tls=False) as server:
        yield server
