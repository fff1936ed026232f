#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: repository_info
short_description: List Bitbucket Cloud repositories of a workspace
version_added: 1.0.0
description:
  - Returns the repositories of a workspace, either the ones named in O(name) or every repository
    that matches O(query) and O(role), with the fields playbooks need to check them out.
  - Lists are fetched with 100 repositories per page, the remaining pages in parallel.
author:
  - codeferry.bitbucket contributors (@codeferry)
extends_documentation_fragment:
  - codeferry.bitbucket.auth
  - codeferry.bitbucket.auth.oauth
  - codeferry.bitbucket.attributes
  - codeferry.bitbucket.attributes.actiongroup_bitbucket
  - codeferry.bitbucket.attributes.info_module
options:
  workspace:
    description:
      - Workspace slug (as in C(https://bitbucket.org/WORKSPACE/...)) or UUID in braces.
    type: str
    required: true
  name:
    description:
      - Slugs of repositories to return, fetched one by one, in this order.
      - A repository that does not exist, or that the credentials cannot see, fails the task.
      - Mutually exclusive with O(query), O(sort) and O(role).
    type: list
    elements: str
  query:
    description:
      - Filter in the Bitbucket query language, sent as C(q), for example V(project.key = "PROJ")
        or V(updated_on > 2026-01-01).
    type: str
  sort:
    description:
      - Field to sort by, for example V(name) or V(-updated_on) (descending).
    type: str
  role:
    description:
      - Only repositories on which the authenticated user has this role.
        V(member) is read access, V(contributor) write access, V(admin) admin access, V(owner) ownership.
      - Not every kind of credential has a user; an OAuth C(client_credentials) token acts as the consumer.
    type: str
    choices: [member, contributor, admin, owner]
notes:
  - The result never changes anything, so C(changed) is always V(false); requesting an access token for the
    call does not count as a change.
seealso:
  - module: codeferry.bitbucket.ref_info
  - module: codeferry.bitbucket.oauth_token
  - name: Filtering and sorting API results
    description: The Bitbucket query language used by O(query).
    link: https://developer.atlassian.com/cloud/bitbucket/rest/intro/#filtering
'''

EXAMPLES = r'''
- name: All repositories of project PROJ
  codeferry.bitbucket.repository_info:
    workspace: acme
    query: 'project.key = "PROJ"'
    sort: name
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  register: proj

- name: Show their clone URLs
  ansible.builtin.debug:
    msg: "{{ proj.repositories | map(attribute='clone_url') }}"

- name: Two repositories by name, with a token obtained earlier
  codeferry.bitbucket.repository_info:
    workspace: acme
    name:
      - api
      - web
    access_token: "{{ bitbucket_token.access_token }}"
  delegate_to: localhost
  run_once: true
  register: picked

- name: Defaults for every Bitbucket task of a play
  module_defaults:
    group/codeferry.bitbucket.bitbucket:
      client_id: "{{ bitbucket_client_id }}"
      client_secret: "{{ bitbucket_client_secret }}"
  block:
    - name: Repositories updated this year
      codeferry.bitbucket.repository_info:
        workspace: acme
        query: updated_on >= 2026-01-01
        sort: -updated_on
      register: recent
'''

RETURN = r'''
repositories:
  description: The repositories, in the order of O(name), or in the API's order (see O(sort)).
  returned: always
  type: list
  elements: dict
  contains:
    full_name:
      description: C(workspace/slug).
      type: str
      sample: acme/api
    slug:
      description: Repository slug, as used in URLs.
      type: str
      sample: api
    name:
      description: Display name.
      type: str
      sample: api
    uuid:
      description: Repository UUID, in braces.
      type: str
      sample: "{7708d810-964c-403f-8c3b-2b7e44c4b6e5}"
    workspace:
      description: Workspace slug.
      type: str
      sample: acme
    project_key:
      description: Key of the repository's project, if it has one.
      type: str
      sample: PROJ
    is_private:
      description: Whether the repository is private.
      type: bool
      sample: true
    mainbranch:
      description: Name of the main branch, if the repository has one.
      type: str
      sample: main
    description:
      description: Repository description.
      type: str
      sample: Acme API service
    language:
      description: Main language, as set on Bitbucket.
      type: str
      sample: python
    size:
      description: Size in bytes.
      type: int
      sample: 123456
    updated_on:
      description: Last update, ISO 8601.
      type: str
      sample: "2026-11-20T09:13:51.613826+00:00"
    clone_url:
      description:
        - HTTPS clone URL without credentials. Bitbucket puts the caller's user name in it; the module removes it.
        - Feed it to the C(codeferry.bitbucket.token_url) filter or the C(codeferry.bitbucket.checkout) role.
      type: str
      sample: https://bitbucket.org/acme/api.git
    ssh_url:
      description: SSH clone URL.
      type: str
      sample: git@bitbucket.org:acme/api.git
    html_url:
      description: Web page of the repository.
      type: str
      sample: https://bitbucket.org/acme/api
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import validate_slug
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import api_argument_spec
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import repository_summary


def query(runner):
    params = runner.module.params
    workspace = validate_slug('workspace', params['workspace'])
    names = [validate_slug('name', name) for name in params['name'] or []]
    client = runner.client()
    if names:
        found = [client.get('repositories', workspace, name) for name in names]
    else:
        found = client.paginate('repositories', workspace, q=params['query'], sort=params['sort'], role=params['role'])
    return dict(changed=False, repositories=[repository_summary(repo) for repo in found])


def main():
    spec = api_argument_spec()
    spec.update(
        workspace=dict(type='str', required=True),
        name=dict(type='list', elements='str'),
        query=dict(type='str'),
        sort=dict(type='str'),
        role=dict(type='str', choices=['member', 'contributor', 'admin', 'owner']),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=[('name', 'query'), ('name', 'sort'), ('name', 'role')])
    ModuleRunner(module).run(query)


if __name__ == '__main__':
    main()
