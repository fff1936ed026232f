# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: oauth_token
short_description: Get a Bitbucket OAuth 2.0 access token (Cloud or Data Center) on the controller
version_added: 1.0.0
description:
  - Returns an access token for a Bitbucket OAuth consumer, as M(codeferry.bitbucket.oauth_token) does,
    sharing its token cache and lock. A cached token with at least O(min_ttl) seconds left is returned without
    any request; otherwise one token is requested, however many hosts, forks and templates ask at once.
  - Takes no terms. Options are given as keyword arguments or come from the environment.
  - On Bitbucket Data Center (O(api_url) a Data Center REST API root, or O(token_url) its token endpoint), use
    O(grant_type=refresh_token) after a one-time authorization with the C(codeferry.bitbucket.authorize) playbook.
    Data Center has no C(client_credentials) grant; asking for one fails at once, before any request.
  - Lookups are evaluated lazily, every time the value is used; the cache keeps that cheap, but prefer
    C(set_fact) or task variables to evaluate it once.
author:
  - codeferry.bitbucket contributors (@codeferry)
extends_documentation_fragment:
  - codeferry.bitbucket.auth.oauth
  - codeferry.bitbucket.auth.oauth_plugins
  - codeferry.bitbucket.auth.grant
options:
  api_url:
    description:
      - Used only when O(token_url) is not set, to find the token endpoint. A Bitbucket Data Center REST API root
        (C(https://HOST/CONTEXT/rest/api/1.0) or C(/rest/api/latest)) makes the token endpoint
        C(https://HOST/CONTEXT/rest/oauth2/latest/token); any other value, or none, leaves it Bitbucket Cloud's.
      - If not set, the environment variable E(BITBUCKET_API_URL) is used; an empty one counts as not set.
    type: str
    env:
      - name: BITBUCKET_API_URL
notes:
  - The token is a secret. Use C(no_log=true) on tasks whose arguments or results contain it.
  - Cache warnings (for example a corrupt cache file being replaced) are shown as Ansible warnings.
  - Like every lookup, it also runs in check mode, and then requests and caches a token when needed, as the module does.
  - With O(cache=false), every evaluation of the lookup requests a new token; a lookup in play C(vars) is
    evaluated each time a task uses the variable, on every host.
  - Unknown or misspelt options are an error that lists the valid ones.
  - Set E(BITBUCKET_CLIENT_SECRET) in the environment of C(ansible-playbook). The C(environment) keyword of a
    task does not reach lookups, which run on the controller before the task.
seealso:
  - module: codeferry.bitbucket.oauth_token
'''

EXAMPLES = r'''
- name: Query repositories with a token from the shared cache
  codeferry.bitbucket.repository_info:
    workspace: acme
    access_token: "{{ lookup('codeferry.bitbucket.oauth_token', client_id=bitbucket_client_id, client_secret=bitbucket_client_secret) }}"
  delegate_to: localhost
  run_once: true

- name: Client id and secret from BITBUCKET_CLIENT_ID and BITBUCKET_CLIENT_SECRET
  ansible.builtin.set_fact:
    bitbucket_token: "{{ lookup('codeferry.bitbucket.oauth_token') }}"
  no_log: true

- name: Bitbucket Data Center, after the codeferry.bitbucket.authorize playbook (refresh tokens rotate through the cache)
  ansible.builtin.set_fact:
    bitbucket_token: "{{ lookup('codeferry.bitbucket.oauth_token', grant_type='refresh_token',
                        api_url='https://bitbucket.example.com/rest/api/1.0') }}"
  no_log: true
'''

RETURN = r'''
_raw:
  description: A list with one element, the access token.
  type: list
  elements: str
'''

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import request_token, resolve_credentials
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import BitbucketError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import PluginHttp, redact

display = Display()

_SECRETS = ('client_secret', 'refresh_token', 'code', 'code_verifier')
_URL_OPTIONS = ('api_url', 'token_url')


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleError('lookup codeferry.bitbucket.oauth_token takes no terms, only options '
                               '(for example client_id=..., client_secret=...)')
        self.set_options(var_options=variables, direct=kwargs)
        # The documented options are the one list; set_options() would silently drop a misspelt one.
        params = self.get_options()
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise AnsibleError('lookup codeferry.bitbucket.oauth_token: unknown option%s %s; valid options are %s'
                               % ('s' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(sorted(params))))
        # An empty BITBUCKET_API_URL or BITBUCKET_TOKEN_URL (AWX renders a blank credential input as "") is unset.
        for name in _URL_OPTIONS:
            if isinstance(params.get(name), str) and not params[name].strip():
                params[name] = None
        secrets = [params[name] for name in _SECRETS if params.get(name)]
        try:
            return [self._token(params, secrets)]
        except BitbucketError as exc:
            message = str(exc)
        except Exception as exc:  # pylint: disable=broad-except
            # A bug or an input nobody foresaw: one message, and no traceback that could hold a secret.
            message = 'unexpected error (please report it): %s: %s' % (type(exc).__name__, exc)
        # Messages are built without secrets; this is only a second line of defence.
        raise AnsibleError('codeferry.bitbucket.oauth_token: %s' % redact(message, secrets))

    @staticmethod
    def _token(params, secrets):
        dummy, values, dummy_env = resolve_credentials(params, allowed=('client_credentials',))
        secrets.append(values['client_secret'])
        http = PluginHttp(validate_certs=params['validate_certs'], ca_path=params['ca_path'], timeout=params['timeout'])
        result = request_token(params, http, values)
        for warning in http.warnings + result.warnings:
            display.warning('codeferry.bitbucket.oauth_token: %s' % warning)
        return result.token.access_token
