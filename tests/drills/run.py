# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""make drill: run every fault drill against one emulator and print one line each; exit 1 if any failed.

    python tests/drills/run.py [-v] [NAME ...]     # only the drills named; -v: the whole of each failure
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drills import DRILLS, DrillSkipped, drill_world, run_drill  # noqa: E402  pylint: disable=wrong-import-position


def main(names):
    """Run the drills (all, or those named) and return the exit code; -v prints the whole of each failure."""
    verbose = '-v' in names
    names = [name for name in names if name != '-v']
    chosen = [item for item in DRILLS if not names or item.name in names]
    unknown = sorted(set(names) - {item.name for item in DRILLS})
    if unknown:
        print('unknown drill(s): %s; known: %s' % (', '.join(unknown), ', '.join(item.name for item in DRILLS)))
        return 2
    work = tempfile.mkdtemp(prefix='codeferry-drills-')
    failed = 0
    started = time.monotonic()
    try:
        with drill_world(os.path.join(work, 'world')) as (emulator, collections):
            for item in chosen:
                try:
                    seen, ok, details = run_drill(item, emulator, collections, os.path.join(work, item.name))
                except DrillSkipped as exc:
                    print('DRILL %s: injected %s; expected %s; seen nothing -> skipped: %s'
                          % (item.name, item.injected, item.expected, exc), flush=True)
                    continue
                failed += not ok
                print(item.line(seen, ok), flush=True)
                if not ok and verbose:
                    print(details, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print('%d of %d drills ok in %.0f s' % (len(chosen) - failed, len(chosen), time.monotonic() - started))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
