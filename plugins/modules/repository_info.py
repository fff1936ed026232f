#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: repository_info
short_description: List Bitbucket repositories of a workspace or Data Center project
version_added: 1.0.0
description:
  - Returns repositories with the fields playbooks need to check them out, the same fields on Bitbucket Cloud
    and Bitbucket Data Center (see O(api_url) for how the flavour is chosen).
  - On Bitbucket Cloud, the repositories of a workspace, either the ones named in O(name) or every repository
    that matches O(query) and O(role). Lists are fetched with 100 repositories per page, the remaining pages
    in parallel. That is one API request per name, or one per page of the listing.
  - On Bitbucket Data Center, the repositories of a project (O(workspace) is the project key), the ones named
    in O(name), or, without O(workspace), every repository the credentials can see. Lists are fetched with the
    largest page the server allows (1000 asked; Data Center caps it to its configured maximum), following
    C(nextPageStart), or fetching the remaining pages in parallel when the response's C(size) says how many there are.
    Data Center's repository objects do not carry the default branch, so it is fetched for each repository
    (C(branches/default)), up to 8 at a time. That is two API requests per name, or the listing's pages plus
    one per repository (63 for a project of 62 repositories).
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
      - On Bitbucket Cloud, the workspace slug (as in C(https://bitbucket.org/WORKSPACE/...)) or UUID in braces.
        Required on Cloud.
      - On Bitbucket Data Center, the project key, for example V(OPS), or V(~username) for a personal project.
        Optional there; without it the module lists every repository the credentials can see.
    type: str
  name:
    description:
      - Slugs of repositories to return, fetched one by one, in this order. Needs O(workspace).
      - A repository that does not exist, or that the credentials cannot see, fails the task.
      - Mutually exclusive with O(query), O(sort) and O(role).
    type: list
    elements: str
  query:
    description:
      - Bitbucket Cloud only. Filter in the Bitbucket query language, sent as C(q), for example
        V(project.key = "PROJ") or V(updated_on > 2026-01-01).
      - Data Center has no query language; the task fails if this is set. List the project there, or
        name the repositories, and filter the result in the playbook.
    type: str
  sort:
    description:
      - Bitbucket Cloud only. Field to sort by, for example V(name) or V(-updated_on) (descending).
      - Data Center returns repositories ordered by project and name; the task fails if this is set.
        Use the C(sort) filter on the result instead.
    type: str
  role:
    description:
      - Bitbucket Cloud only. Only repositories on which the authenticated user has this role.
        V(member) is read access, V(contributor) write access, V(admin) admin access, V(owner) ownership.
      - Not every kind of credential has a user; an OAuth C(client_credentials) token acts as the consumer.
      - On Data Center the task fails if this is set; what is listed is what the credentials can read, so use a
        token with the permission you need.
    type: str
    choices: [member, contributor, admin, owner]
notes:
  - The result never changes anything, so C(changed) is always V(false); requesting an access token for the
    call does not count as a change.
  - On Data Center, O(workspace) means the project key, as in the other modules, and the returned RV(repositories[].workspace)
    is that project key too.
seealso:
  - module: codeferry.bitbucket.ref_info
  - module: codeferry.bitbucket.oauth_token
  - name: Filtering and sorting API results
    description: The Bitbucket query language used by O(query).
    link: https://developer.atlassian.com/cloud/bitbucket/rest/intro/#filtering
'''

EXAMPLES = r'''
- name: Every repository of project OPS on a Data Center instance, with an HTTP access token
  codeferry.bitbucket.repository_info:
    api_url: https://bitbucket.example.com/rest/api/1.0
    workspace: OPS
    access_token: "{{ bitbucket_dc_token }}"
  delegate_to: localhost
  run_once: true
  register: ops

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
      description: C(workspace/slug); on Data Center C(PROJECTKEY/slug).
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
      description: Repository UUID, in braces; on Data Center the numeric repository id, as a string.
      type: str
      sample: "{7708d810-964c-403f-8c3b-2b7e44c4b6e5}"
    workspace:
      description: Workspace slug; on Data Center the project key.
      type: str
      sample: acme
    project_key:
      description: Key of the repository's project, if it has one.
      type: str
      sample: PROJ
    is_private:
      description: Whether the repository is private; on Data Center, neither it nor its project is public.
      type: bool
      sample: true
    mainbranch:
      description: Name of the main branch (on Data Center the default branch), null for a repository without commits.
      type: str
      sample: main
    description:
      description: Repository description.
      type: str
      sample: Acme API service
    language:
      description: Main language, as set on Bitbucket Cloud; null on Data Center.
      type: str
      sample: python
    size:
      description: Size in bytes; null on Data Center.
      type: int
      sample: 123456
    updated_on:
      description: Last update, ISO 8601; null on Data Center.
      type: str
      sample: "2026-11-20T09:13:51.613826+00:00"
    clone_url:
      description:
        - HTTPS clone URL without credentials. Bitbucket puts the caller's user name in it; the module removes it.
        - Feed it to M(codeferry.bitbucket.git_checkout) or the C(codeferry.bitbucket.checkout) role. On Bitbucket Cloud,
          the C(codeferry.bitbucket.token_url) filter also takes it; on Data Center a project or repository token cannot
          be carried in a URL (Bearer only), so use C(git_checkout) with C(access_token) there.
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

from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import api_argument_spec
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import list_repositories


def query(runner):
    params = runner.module.params
    repositories = list_repositories(runner.client(), workspace=params['workspace'], names=params['name'],
                                     query=params['query'], sort=params['sort'], role=params['role'])
    return dict(changed=False, repositories=repositories)


def main():
    spec = api_argument_spec()
    spec.update(
        # Required on Cloud only, which the argument spec cannot express: list_repositories() checks it.
        workspace=dict(type='str'),
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
