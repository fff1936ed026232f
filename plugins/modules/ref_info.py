#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: ref_info
short_description: Resolve Bitbucket branches and tags to commits
version_added: 1.0.0
description:
  - Returns branches and tags of a repository with the commit each points to, and the repository's main branch.
  - Use it once on the controller to pin a branch to one commit, then deploy that commit on every host,
    so that hosts do not end up on different commits when someone pushes during the run.
  - Works with Bitbucket Cloud and Bitbucket Data Center (see O(api_url)), with the same fields.
  - "Requests on Cloud: with O(name) one (for O(kind=all) and a name without quotes or backslashes, one query on
    C(refs); else one per kind); without O(name), the repository plus one listing per kind, 100 refs per page."
  - "Requests on Data Center: with O(name) one per kind (C(branches?filterText=NAME), C(tags?filterText=NAME), then
    an exact match; both in parallel for O(kind=all)); without O(name), one listing per kind with the largest page the
    server allows (the branch listing flags the default branch, giving RV(mainbranch)), plus C(branches/default) for
    O(kind=tag)."
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
      - On Bitbucket Cloud, the workspace slug or UUID in braces.
      - On Bitbucket Data Center, the project key, for example V(OPS).
    type: str
    required: true
  repository:
    description:
      - Repository slug or UUID in braces.
    type: str
    required: true
  kind:
    description:
      - Which refs to look at.
      - With V(all), O(name) may match a branch, a tag, or both (both are returned).
    type: str
    choices: [branch, tag, all]
    default: branch
  name:
    description:
      - Exact branch or tag name, for example V(main) or V(release/1.x). Looked up without listing every ref
        (see the request counts above).
      - A C(refs/heads/) or C(refs/tags/) prefix is accepted and taken off.
      - A name that does not exist fails the task.
      - Mutually exclusive with O(query) and O(sort).
    type: str
  query:
    description:
      - Bitbucket Cloud only. Filter in the Bitbucket query language, sent as C(q), for example V(name ~ "release/").
      - Without O(name) and O(query), every ref of the O(kind) is returned.
      - Data Center has no query language; the task fails if this is set. Use O(name), or list and filter the result
        in the playbook.
    type: str
  sort:
    description:
      - Bitbucket Cloud only. Field to sort by, for example V(name) (natural order) or V(-target.date).
      - On Data Center the task fails if this is set; use the C(sort) filter on the result.
    type: str
notes:
  - C(changed) is always V(false); requesting an access token for the call does not count as a change.
seealso:
  - module: codeferry.bitbucket.repository_info
'''

EXAMPLES = r'''
- name: Pin main of OPS/deploy on a Data Center instance, with an HTTP access token
  codeferry.bitbucket.ref_info:
    api_url: https://bitbucket.example.com/rest/api/1.0
    workspace: OPS
    repository: deploy
    name: main
    access_token: "{{ bitbucket_dc_token }}"
  delegate_to: localhost
  run_once: true
  register: deploy_ref

- name: Pin the main branch to one commit for the whole run
  codeferry.bitbucket.ref_info:
    workspace: acme
    repository: api
    name: main
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  register: api_ref

- name: Deploy exactly that commit everywhere
  ansible.builtin.debug:
    msg: "Deploying {{ api_ref.commit }}"

- name: Release branches, newest commit first
  codeferry.bitbucket.ref_info:
    workspace: acme
    repository: api
    query: 'name ~ "release/"'
    sort: -target.date
    access_token: "{{ bitbucket_token.access_token }}"
  delegate_to: localhost
  run_once: true
  register: releases

- name: A tag or branch called v1.0.0
  codeferry.bitbucket.ref_info:
    workspace: acme
    repository: api
    kind: all
    name: v1.0.0
    access_token: "{{ bitbucket_token.access_token }}"
  delegate_to: localhost
  run_once: true
  register: release
'''

RETURN = r'''
refs:
  description: Matching branches and tags (branches first when O(kind=all)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Branch or tag name, without C(refs/heads/) or C(refs/tags/).
      type: str
      sample: release/1.x
    type:
      description: V(branch) or V(tag).
      type: str
      sample: branch
    commit:
      description: Full hash of the commit the ref points to (for a tag, the tagged commit).
      type: str
      sample: 9fbd1a7e1a1c7c39e1f4d0e8d64e2f1d2d9c6a11
    date:
      description:
        - Date of that commit, ISO 8601.
        - On Data Center, the committer date of a branch's latest commit when the server reports it with the
          branch listing; null for tags, since it would cost a request per ref.
      type: str
      sample: "2026-11-20T09:13:51+00:00"
commit:
  description: The commit of the only ref found; convenient with O(name).
  returned: when exactly one ref matches
  type: str
  sample: 9fbd1a7e1a1c7c39e1f4d0e8d64e2f1d2d9c6a11
mainbranch:
  description:
    - Name of the repository's main branch (on Data Center the default branch); null for a repository without commits.
    - Not returned with O(name), which is looked up in one request without fetching the repository.
  returned: when O(name) is not set
  type: str
  sample: main
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import api_argument_spec
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import REF_KINDS, find_refs


def resolve(runner):
    params = runner.module.params
    refs, mainbranch = find_refs(runner.client(), params['workspace'], params['repository'], params['kind'],
                                 name=params['name'], query=params['query'], sort=params['sort'])
    result = dict(changed=False, refs=refs)
    if params['name'] is None:
        result['mainbranch'] = mainbranch
    if len(refs) == 1:
        result['commit'] = refs[0]['commit']
    return result


def main():
    spec = api_argument_spec()
    spec.update(
        workspace=dict(type='str', required=True),
        repository=dict(type='str', required=True),
        kind=dict(type='str', default='branch', choices=list(REF_KINDS)),
        name=dict(type='str'),
        query=dict(type='str'),
        sort=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=[('name', 'query'), ('name', 'sort')])
    ModuleRunner(module).run(resolve)


if __name__ == '__main__':
    main()
