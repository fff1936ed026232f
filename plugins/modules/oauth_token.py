#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: oauth_token
short_description: Get a Bitbucket OAuth 2.0 access token (Cloud or Data Center), cached and shared across a run
version_added: 1.0.0
description:
  - Requests an access token from the Bitbucket token endpoint with the C(client_credentials),
    C(refresh_token) or C(authorization_code) grant. On Bitbucket Cloud it authenticates the OAuth consumer
    with HTTP Basic.
  - "On Bitbucket Data Center (O(api_url) a Data Center REST API root, or O(token_url) its token endpoint) it talks
    to the OAuth 2.0 provider of an incoming application link: client authentication by C(client_id) and
    C(client_secret) form parameters, the grants C(authorization_code) (with PKCE, O(code_verifier)) and
    C(refresh_token), which rotates. Data Center has no C(client_credentials) grant: asking for it fails at once,
    before any request, with a message that says what to use instead (an HTTP access token, or the authorization
    code flow of the C(codeferry.bitbucket.authorize) playbook)."
  - Tokens are kept in a file cache (see O(cache_dir)). A cached token with at least O(min_ttl) seconds left
    is returned without any request and with C(changed=false), so running the task twice requests one token,
    not two. Concurrent runs and forks are serialised by a lock, so they also request only one.
  - When the cached token is too old and a refresh token is known (cached, or O(refresh_token)), the module
    refreshes first; refresh tokens that Bitbucket rotates are saved before the module returns.
    If Bitbucket rejects a cached refresh token, the module falls back to the C(client_credentials) grant,
    or to O(code) for O(grant_type=authorization_code). With O(grant_type=refresh_token) a rejected refresh
    token is an error, because a C(client_credentials) token would act as the consumer, not as the user.
  - Run it once per play on the controller, with both C(run_once=true) and C(delegate_to=localhost).
    C(run_once) alone runs it on the first host of the play, and the token cache then lives on that host;
    C(delegate_to) alone mints once but runs the task once per host. Bitbucket rate-limits requests per OAuth
    consumer, so never mint once per host.
author:
  - codeferry.bitbucket contributors (@codeferry)
extends_documentation_fragment:
  - codeferry.bitbucket.auth.oauth
  - codeferry.bitbucket.auth.grant
  - codeferry.bitbucket.auth.token_module_group
  - codeferry.bitbucket.attributes
  - codeferry.bitbucket.attributes.actiongroup_bitbucket
attributes:
  check_mode:
    support: full
    details:
      - Check mode behaves like a normal run. Minting a token changes nothing on Bitbucket, later tasks of the
        check run need the token, and a rotated refresh token must be saved because the old one is spent.
  diff_mode:
    support: none
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
  - name: Bitbucket Data Center OAuth 2.0 provider API
    description: The incoming application link's endpoints, grants and scopes on Bitbucket Data Center.
    link: https://confluence.atlassian.com/bitbucketserver089/bitbucket-oauth-2-0-provider-api-1236436692.html
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

- name: After the codeferry.bitbucket.authorize playbook, act as the user who authorized the consumer
  codeferry.bitbucket.oauth_token:
    grant_type: refresh_token
    cache_entry: alice
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  no_log: true
  register: user_token

- name: Renew now, for example after Bitbucket revoked the cached token
  codeferry.bitbucket.oauth_token:
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
    force: true
  delegate_to: localhost
  run_once: true
  no_log: true
  register: bitbucket_token

- name: Bitbucket Data Center, after the codeferry.bitbucket.authorize playbook; the rotated refresh token is cached
  codeferry.bitbucket.oauth_token:
    grant_type: refresh_token
    api_url: https://bitbucket.example.com/rest/api/1.0
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  no_log: true
  register: user_token

- name: Bitbucket Data Center, exchange an authorization code with the PKCE verifier its challenge came from
  codeferry.bitbucket.oauth_token:
    grant_type: authorization_code
    api_url: https://bitbucket.example.com/rest/api/1.0
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
    code: "{{ callback.code }}"
    code_verifier: "{{ pkce_verifier }}"
    redirect_uri: http://127.0.0.1:8976/callback
  delegate_to: localhost
  run_once: true
  no_log: true
  register: user_token

- name: Share connection and credential options with every module of the collection
  module_defaults:
    group/codeferry.bitbucket.bitbucket:
      client_id: "{{ bitbucket_client_id }}"
      client_secret: "{{ bitbucket_client_secret }}"
      workspace: acme
  block:
    - name: Mint or reuse the consumer's token
      codeferry.bitbucket.oauth_token:
      delegate_to: localhost
      run_once: true
      no_log: true
      register: bitbucket_token

    - name: List the workspace's repositories with the same defaults and the cached token
      codeferry.bitbucket.repository_info:
      delegate_to: localhost
      run_once: true
      register: repos
'''

RETURN = r'''
access_token:
  description:
    - The access token. Secret; register the result with C(no_log=true).
  returned: success
  type: str
  sample: "<secret>"
token_type:
  description: Token type as reported by Bitbucket.
  returned: success
  type: str
  sample: bearer
expires_in:
  description: Seconds the token is still valid.
  returned: success
  type: int
  sample: 7199
expires_at:
  description: When the token expires, ISO 8601 in UTC.
  returned: success
  type: str
  sample: "2026-11-25T13:31:19Z"
scopes:
  description: Scopes granted to the token (Data Center, for example, V(REPO_READ)).
  returned: success
  type: list
  elements: str
  sample: [repository, account]
refresh_token:
  description:
    - Refresh token that goes with the access token. Secret.
    - Bitbucket Cloud rotates refresh tokens on use since 2026-05, Data Center always; the newest one is also in
      the cache.
  returned: when the token has one
  type: str
  sample: "<secret>"
from_cache:
  description: Whether the token came from the cache without any request.
  returned: always
  type: bool
  sample: true
grant_type:
  description: The grant that produced the token, also for a cached token.
  returned: success
  type: str
  sample: client_credentials
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
    result = request_token(params, module_http(module), values)
    runner.warn_all(result.warnings)
    token = result.token
    output = dict(changed=result.changed, from_cache=result.from_cache, access_token=token.access_token,
                  token_type=token.token_type, expires_in=token.expires_in(), expires_at=iso8601(token.expires_at),
                  scopes=token.scopes, grant_type=token.grant_type)
    if token.refresh_token:
        output['refresh_token'] = token.refresh_token
    # Returning the token is this module's job: keep AnsibleModule from masking it when it equals a
    # no_log input (an unrotated refresh token passed in). The task's no_log protects the output.
    for value in (token.access_token, token.refresh_token):
        module.no_log_values.discard(value)
    # access_token and password (set for the whole action group by module_defaults) are not used here. Ansible
    # masks every occurrence of a no_log value, so a short one would be masked inside the returned token and
    # break it: show those options as masked by hand and stop masking their values.
    used = set(params[name] for name in ('client_secret', 'refresh_token', 'code', 'code_verifier') if params.get(name))
    for name in ('access_token', 'password'):
        if params.get(name):
            if params[name] not in used:
                module.no_log_values.discard(params[name])
            params[name] = 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    return output


def main():
    module = AnsibleModule(argument_spec=token_argument_spec(), supports_check_mode=True)
    ModuleRunner(module).run(obtain)


if __name__ == '__main__':
    main()
