# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every fault drill of drills.py as a test; `make drill` runs the same drills and prints one line each."""

import pytest

from drills import DRILLS, DrillSkipped, drill_world, run_drill


@pytest.fixture(scope='module', name='world')
def world_fixture(tmp_path_factory):
    """One emulator and one collections path for every drill."""
    with drill_world(tmp_path_factory.mktemp('drills')) as world:
        yield world


@pytest.mark.parametrize('item', DRILLS, ids=[item.name for item in DRILLS])
def test_drill(item, world, tmp_path):
    emulator, collections = world
    try:
        seen, ok, details = run_drill(item, emulator, collections, tmp_path)
    except DrillSkipped as exc:
        pytest.skip(str(exc))
    assert ok, item.line(seen, ok) + '\n' + details
