# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make this checkout importable as ansible_collections.codeferry.bitbucket under plain pytest.

ansible-test runs from inside ansible_collections/codeferry/bitbucket and needs nothing. From a
plain checkout, a symlink in the temporary directory provides that layout. Running this twice,
from several pytest-xdist workers, or next to another conftest that does the same is harmless.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = 'ansible_collections.codeferry.bitbucket'


def _already_importable():
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except ImportError:
        return False
    locations = list(spec.submodule_search_locations or []) if spec else []
    return any(Path(location).resolve() == COLLECTION_ROOT for location in locations)


def _collections_parent():
    """Return the directory that holds ansible_collections/codeferry/bitbucket for this checkout."""
    if COLLECTION_ROOT.parts[-3:-1] == ('ansible_collections', 'codeferry'):
        return COLLECTION_ROOT.parents[2]
    digest = hashlib.sha256(str(COLLECTION_ROOT).encode()).hexdigest()[:12]
    parent = Path(tempfile.gettempdir()) / f'codeferry-bitbucket-{os.getuid()}-{digest}'
    link = parent / 'ansible_collections' / 'codeferry' / 'bitbucket'
    if not (link.is_symlink() and link.resolve() == COLLECTION_ROOT):
        link.parent.mkdir(parents=True, exist_ok=True)
        # Build the link under a unique name, then rename: atomic when workers race.
        staging = link.with_name(f'.bitbucket-{os.getpid()}')
        if staging.is_symlink():
            staging.unlink()
        staging.symlink_to(COLLECTION_ROOT, target_is_directory=True)
        os.replace(staging, link)
    return parent


if not _already_importable():
    sys.path.insert(0, str(_collections_parent()))
