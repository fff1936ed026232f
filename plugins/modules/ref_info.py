#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: ref_info
short_description: Resolve Bitbucket Cloud branches and tags to commits
version_added: 1.0.0
description:
  - Returns branches and tags of a repository with the commit each points to, and the repository's main branch.
  - Use it once on the controller to pin a branch to one commit, then deploy that commit on every host,
    so that hosts do not end up on different commits when someone pushes during the run.
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
      - Workspace slug or UUID in braces.
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
      - Exact branch or tag name, for example V(main) or V(release/1.x). Fetched directly in one request, without listing.
      - A C(refs/heads/) or C(refs/tags/) prefix is accepted and taken off.
      - A name that does not exist fails the task.
      - Mutually exclusive with O(query) and O(sort).
    type: str
  query:
    description:
      - Filter in the Bitbucket query language, sent as C(q), for example V(name ~ "release/").
      - Without O(name) and O(query), every ref of the O(kind) is returned.
    type: str
  sort:
    description:
      - Field to sort by, for example V(name) (natural order) or V(-target.date).
    type: str
notes:
  - C(changed) is always V(false); requesting an access token for the call does not count as a change.
seealso:
  - module: codeferry.bitbucket.repository_info
'''

EXAMPLES = r'''
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
      description: Date of that commit, ISO 8601.
      type: str
      sample: "2026-11-20T09:13:51+00:00"
commit:
  description: The commit of the only ref found; convenient with O(name).
  returned: when exactly one ref matches
  type: str
  sample: 9fbd1a7e1a1c7c39e1f4d0e8d64e2f1d2d9c6a11
mainbranch:
  description:
    - Name of the repository's main branch; null for a repository without commits.
    - Not returned with O(name), which is looked up in one request without fetching the repository.
  returned: when O(name) is not set
  type: str
  sample: main
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import validate_slug
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import api_argument_spec
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import NotFoundError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import REF_KINDS, mainbranch, ref_summary, split_ref_name

_COLLECTIONS = (('branch', 'branches'), ('tag', 'tags'))


def resolve(runner):
    params = runner.module.params
    workspace = validate_slug('workspace', params['workspace'])
    repository = validate_slug('repository', params['repository'])
    kind = params['kind']
    name = None
    if params['name'] is not None:
        name, kind = split_ref_name(params['name'], kind)
    client = runner.client()
    if name is not None:
        refs = _named_refs(client, workspace, repository, kind, name)
        result = dict(changed=False, refs=refs)
    else:
        # Without a name the repository is fetched too: it has the main branch.
        repo = client.get('repositories', workspace, repository)
        refs = []
        for ref_kind, collection in _COLLECTIONS:
            if kind in (ref_kind, 'all'):
                found = client.paginate('repositories', workspace, repository, 'refs', collection,
                                        q=params['query'], sort=params['sort'])
                refs.extend(ref_summary(ref, ref_kind) for ref in found)
        result = dict(changed=False, refs=refs, mainbranch=mainbranch(repo))
    if len(refs) == 1:
        result['commit'] = refs[0]['commit']
    return result


def _named_refs(client, workspace, repository, kind, name):
    """The branch and/or tag called name, in one request; a 404 names the repository or the ref that is missing."""
    if kind == 'all' and not set(name) & set('"\\'):
        # One request for both kinds: an exact-name query on the refs collection (branches first).
        found = client.paginate('repositories', workspace, repository, 'refs', q='name = "%s"' % name)
        refs = [ref_summary(ref) for ref in found if isinstance(ref, dict) and ref.get('name') == name]
        refs.sort(key=lambda ref: ref['type'] != 'branch')
    else:
        refs = []
        for ref_kind, collection in _COLLECTIONS:
            if kind not in (ref_kind, 'all'):
                continue
            try:
                refs.append(ref_summary(client.get('repositories', workspace, repository, 'refs', collection, name), ref_kind))
            except NotFoundError:
                if kind != 'all':
                    raise
    if not refs:
        raise NotFoundError('%s/%s has no branch or tag named %r' % (workspace, repository, name), status=404)
    return refs


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
