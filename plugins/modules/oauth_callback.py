#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: oauth_callback
short_description: Wait for one Bitbucket OAuth authorization redirect on a loopback port
version_added: 1.0.0
description:
  - Listens once on a loopback address for the browser redirect that Bitbucket sends to an OAuth
    consumer's callback URL after a person grants access, checks its O(state), and returns the
    authorization code.
  - Used by the C(codeferry.bitbucket.authorize) playbook, which then exchanges the code
    with M(codeferry.bitbucket.oauth_token) for a refresh token kept in the token cache.
  - Run it on the controller, where the browser is. The code is a secret; register the result
    with C(no_log=true).
author:
  - codeferry.bitbucket contributors (@codeferry)
extends_documentation_fragment:
  - codeferry.bitbucket.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
options:
  redirect_uri:
    description:
      - The consumer's callback URL, as set in the Bitbucket workspace settings.
      - It must be an C(http://) URL on a loopback address (V(127.0.0.1), V(localhost) or V([::1]))
        with an explicit port. The module listens there and accepts requests for its path only.
    type: str
    required: true
  state:
    description:
      - The O(state) value sent in the authorize URL. A redirect that does not carry it is refused,
        which protects against a forged redirect.
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for the redirect before failing.
    type: int
    default: 300
"""

EXAMPLES = r"""
- name: Wait for the browser to come back with an authorization code
  codeferry.bitbucket.oauth_callback:
    redirect_uri: http://127.0.0.1:8976/
    state: "{{ oauth_state }}"
    timeout: 300
  register: callback
  no_log: true
"""

RETURN = r"""
code:
  description: The authorization code, valid for one exchange at the token endpoint.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.codeferry.bitbucket.plugins.module_utils._callback import wait_for_code
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner


def receive(runner):
    params = runner.module.params
    return dict(changed=False, code=wait_for_code(params['redirect_uri'], params['state'], params['timeout']))


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            redirect_uri=dict(type='str', required=True),
            state=dict(type='str', required=True, no_log=False),
            timeout=dict(type='int', default=300),
        ),
        supports_check_mode=False,
    )
    ModuleRunner(module).run(receive)


def main():
    run_module()


if __name__ == '__main__':
    main()
