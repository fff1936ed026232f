# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Descriptions of the standard attributes; modules state their support.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
'''

    ACTIONGROUP_BITBUCKET = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/codeferry.bitbucket.bitbucket) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - codeferry.bitbucket.bitbucket
'''

    # Read-only modules.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state. It runs normally in check mode.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
'''
