#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: oauth_token
short_description: Get a Bitbucket Cloud OAuth 2.0 access token, cached and shared across a run
version_added: 1.0.0
description:
  - Requests an access token from the Bitbucket token endpoint with the C(client_credentials),
    C(refresh_token) or C(authorization_code) grant, authenticating the OAuth consumer with HTTP Basic.
  - Tokens are kept in a file cache (see O(cache_dir)). A cached token with at least O(min_ttl) seconds left
    is returned without any request and with C(changed=false), so running the task twice requests one token,
    not two. Concurrent runs and forks are serialised by a lock, so they also request only one.
  - When the cached token is too old and a refresh token is known (cached, or O(refresh_token)), the module
    refreshes first; refresh tokens that Bitbucket rotates are saved before the module returns.
    If Bitbucket rejects a cached refresh token, the module falls back to the C(client_credentials) grant,
    or to O(code) for O(grant_type=authorization_code). With O(grant_type=refresh_token) a rejected refresh
    token is an error, because a C(client_credentials) token would act as the consumer, not as the user.
  - Run it once per play on the controller (C(run_once) or C(delegate_to=localhost)), not once per host;
    Bitbucket rate-limits requests per OAuth consumer.
author:
  - codeferry.bitbucket contributors (@codeferry)
extends_documentation_fragment:
  - codeferry.bitbucket.auth.oauth
  - codeferry.bitbucket.auth.grant
  - codeferry.bitbucket.attributes
  - codeferry.bitbucket.attributes.actiongroup_bitbucket
attributes:
  check_mode:
    support: full
    details:
      - In check mode a valid cached token is returned; if a new one would be needed, none is requested,
        nothing is written, and the result has C(changed=true), no token and a RV(msg).
  diff_mode:
    support: none
options:
  api_url:
    description:
      - Not used to get a token. Accepted so that C(module_defaults) for the action group
        C(group/codeferry.bitbucket.bitbucket) can set it once for every module of the collection.
    type: str
    default: https://api.bitbucket.org/2.0
notes:
  - The result contains the token. Use C(no_log=true) on the task, and pass the token on through a variable
    rather than printing it.
  - Set E(BITBUCKET_CLIENT_SECRET) in the environment of C(ansible-playbook), not with the C(environment) keyword
    of the task. Ansible puts those variables on the command line that runs the module, where C(ps) and C(-vvv)
    show them.
seealso:
  - plugin: codeferry.bitbucket.oauth_token
    plugin_type: lookup
    description: The same token from a lookup on the controller, sharing the cache.
  - name: Bitbucket Cloud OAuth 2.0
    description: How OAuth consumers and grants work on Bitbucket Cloud.
    link: https://developer.atlassian.com/cloud/bitbucket/oauth-2/
'''

EXAMPLES = r'''
- name: Get an access token once for the whole play
  codeferry.bitbucket.oauth_token:
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  no_log: true
  register: bitbucket_token

- name: Use it
  codeferry.bitbucket.repository_info:
    workspace: acme
    access_token: "{{ bitbucket_token.access_token }}"
  delegate_to: localhost
  run_once: true
  register: repos

- name: Exchange an authorization code once; later runs refresh from the cache
  codeferry.bitbucket.oauth_token:
    grant_type: authorization_code
    code: "{{ bitbucket_auth_code }}"
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
    min_ttl: 600
  delegate_to: localhost
  run_once: true
  no_log: true
  register: user_token
'''

RETURN = r'''
access_token:
  description:
    - The access token. Secret; register the result with C(no_log=true).
    - Not returned in check mode when a new token would have to be requested.
  returned: when a token is available
  type: str
  sample: "<secret>"
token_type:
  description: Token type as reported by Bitbucket.
  returned: when a token is available
  type: str
  sample: bearer
expires_in:
  description: Seconds the token is still valid.
  returned: when a token is available
  type: int
  sample: 7199
expires_at:
  description: When the token expires, ISO 8601 in UTC.
  returned: when a token is available
  type: str
  sample: "2026-11-25T13:31:19Z"
scopes:
  description: Scopes granted to the token.
  returned: when a token is available
  type: list
  elements: str
  sample: [repository, account]
refresh_token:
  description:
    - Refresh token that goes with the access token. Secret.
    - Bitbucket rotates refresh tokens on use since 2026-05; the newest one is also in the cache.
  returned: when the token has one
  type: str
  sample: "<secret>"
from_cache:
  description: Whether the token came from the cache without any request.
  returned: always
  type: bool
  sample: true
grant_type:
  description: The grant that produced the token (also for a cached token, when known).
  returned: when a token is available
  type: str
  sample: client_credentials
msg:
  description: What check mode would have done.
  returned: in check mode when a new token would be requested
  type: str
  sample: "check mode: no cached token with at least 300 seconds left; a new access token would be requested"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import request_token, resolve_credentials, token_argument_spec
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner, hide_env_secrets, module_http
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import iso8601


def obtain(runner):
    module = runner.module
    params = module.params
    dummy, values, from_env = resolve_credentials(params, allowed=('client_credentials',))
    hide_env_secrets(module, from_env)
    result = request_token(params, module_http(module), values, check_mode=module.check_mode)
    runner.warn_all(result.warnings)
    output = dict(changed=result.changed, from_cache=result.from_cache)
    if result.msg:
        output['msg'] = result.msg
    token = result.token
    if token is not None:
        output.update(access_token=token.access_token, token_type=token.token_type, expires_in=token.expires_in(),
                      expires_at=iso8601(token.expires_at), scopes=token.scopes, grant_type=token.grant_type)
        if token.refresh_token:
            output['refresh_token'] = token.refresh_token
        # Returning the token is this module's job: keep AnsibleModule from masking it when it equals a
        # no_log input (an unrotated refresh token passed in). The task's no_log protects the output.
        for value in (token.access_token, token.refresh_token):
            module.no_log_values.discard(value)
    return output


def main():
    module = AnsibleModule(argument_spec=token_argument_spec(), supports_check_mode=True)
    ModuleRunner(module).run(obtain)


if __name__ == '__main__':
    main()
