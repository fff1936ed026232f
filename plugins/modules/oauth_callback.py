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
  - Run it on the controller, where the browser is, with C(delegate_to=localhost) or in a play on
    C(localhost). The browser's redirect goes to a loopback address, so the listener must be on the
    machine that runs the browser. When the browser is on another machine than the controller,
    forward the port to it (C(ssh -L 8976:127.0.0.1:8976)).
  - Serves several connections at once, so a browser's idle preconnect or a stalled client cannot
    hold the redirect back, and fails after O(timeout) seconds whatever the clients do.
  - The code is a secret; register the result with C(no_log=true).
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
      - It must be an C(http://) URL on a literal loopback address, V(127.0.0.1) or V([::1]), with an
        explicit port, for example V(http://127.0.0.1:8976/). The module listens there and accepts
        requests for its path only.
      - V(localhost) is refused, as RFC 8252 advises. The browser may try V([::1]) while the name
        resolves to V(127.0.0.1) here, and another local user could hold the other address on the
        same port. Set the consumer's callback URL to the literal address instead.
      - The module fails at once if the port is taken.
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
  ready_path:
    description:
      - A file that the module creates, empty and with mode C(0600), once it listens on the port, and
        removes when it stops listening. It must not exist yet.
      - With C(async) and C(poll=0), a play can wait for this file before it shows the authorize URL,
        so that no other process can catch the redirect; the C(codeferry.bitbucket.authorize) playbook
        does so. Put it in a directory that only you can write to.
    type: path
"""

EXAMPLES = r"""
# The browser runs on the controller, so the listener must run there too.
- name: Wait for the browser to come back with an authorization code
  codeferry.bitbucket.oauth_callback:
    redirect_uri: http://127.0.0.1:8976/
    state: "{{ oauth_state }}"
    timeout: 300
  delegate_to: localhost
  run_once: true
  register: callback
  no_log: true
"""

RETURN = r"""
code:
  description: The authorization code, valid for one exchange at the token endpoint.
  returned: success
  type: str
  sample: 5Lq8xYbN2mTcWd7RfGh3
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.codeferry.bitbucket.plugins.module_utils._callback import wait_for_code
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner


def receive(runner):
    params = runner.module.params
    code = wait_for_code(params['redirect_uri'], params['state'], params['timeout'], ready_path=params['ready_path'])
    return dict(changed=False, code=code)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            redirect_uri=dict(type='str', required=True),
            state=dict(type='str', required=True, no_log=False),
            timeout=dict(type='int', default=300),
            ready_path=dict(type='path'),
        ),
        supports_check_mode=False,
    )
    ModuleRunner(module).run(receive)


def main():
    run_module()


if __name__ == '__main__':
    main()
