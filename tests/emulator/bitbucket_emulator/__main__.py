"""Allow `python -m bitbucket_emulator serve ...`."""

import sys

from .cli import main

sys.exit(main())
