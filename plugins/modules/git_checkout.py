#!/usr/bin/python
# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: git_checkout
short_description: Check out private Bitbucket repositories on a host, pinned, without leaking the token
version_added: 1.0.0
description:
  - Brings every repository of O(repositories) to the wanted commit in one run on the managed host,
    and returns one result per repository. H hosts and R repositories cost H module runs.
  - This is the only module of the collection that runs on managed hosts. It needs Python and, for O(method=git), git 2.31 or later.
  - The credential reaches git only through the environment of the git process, read by a credential helper
    that C(GIT_CONFIG_COUNT) configures (with O(flavor=datacenter) and O(access_token), as a
    C(Bearer) C(Authorization) header given the same way). It is never on a command line, and never in C(.git/config)
    unless O(credential_mode=url) asks for that.
  - When C(HEAD) already is O(repositories[].commit) and no tracked file is modified, the module makes no network request at all.
    Otherwise it fetches only the commit, or the ref, with O(repositories[].depth) when given, and checks it out.
  - With O(repositories[].ref) naming a branch, the checkout is on a local branch of that name, reset to the commit and
    tracking C(origin/<branch>), so that C(git status) shows the branch and the owner's C(git pull) works.
    With a tag, or a commit only, C(HEAD) is detached at the commit.
  - "Local work is never destroyed: modified or staged tracked files, local commits that no remote-tracking ref contains,
    and untracked files that the new commit would overwrite fail that repository. Other untracked files stay and do not block.
    A checkout at the wanted commit whose tracked files are modified fails too, since its files are not that commit's."
  - A failed repository fails the task with a message that names each failed O(repositories[].dest) and its reason;
    the other repositories are still processed and every per-repository result is returned.
  - New checkouts are made in a temporary directory beside O(repositories[].dest) and renamed into place, so a
    dropped connection leaves nothing that a new run cannot repair.
  - With O(transport=controller), the action plugin of this module fetches on the controller instead, into one bare
    mirror per repository, and sends each host a git bundle of the commits it lacks over the Ansible connection.
    The host needs no route to the git server and never receives the credential. See O(transport).
author:
  - codeferry.bitbucket contributors (@codeferry)
extends_documentation_fragment:
  - codeferry.bitbucket.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module fetches into a temporary repository (depth 1), never into O(repositories[].dest), so it can
        report the commit a ref would move to, and the local work that would refuse an update, without changing anything.
  diff_mode:
    support: full
    details:
      - The diff shows the commit before and after, per repository.
  action:
    description: Has an action plugin of the same name, which runs on the controller before (or instead of) the module.
    support: full
    details:
      - The action plugin runs O(transport=controller) on the controller; with O(transport=direct) it only runs the module.
options:
  repositories:
    description:
      - The repositories to check out on this host.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description:
          - HTTPS clone URL without credentials, for example V(https://bitbucket.org/acme/api.git).
          - A URL with a user name or password in it is refused.
        type: str
        required: true
      dest:
        description:
          - Absolute path of the checkout. Missing parent directories are created.
          - It must be absent, an empty directory, or a checkout of the same repository made earlier.
          - If not set, the checkout goes to O(root)/<repository name>, the last part of O(repositories[].url)
            without C(.git).
        type: path
      commit:
        description:
          - Full commit hash, 40 hexadecimal digits (64 for SHA-256 repositories).
          - Give it for repeatable runs; only then can a run that finds the checkout already there skip the network.
          - Without it the module fetches O(repositories[].ref) on every run and checks out where it points.
        type: str
      ref:
        description:
          - Branch or tag name. A bare name is tried as a branch, then as a tag; C(refs/heads/) or C(refs/tags/) says which.
          - With a branch, the checkout is on a local branch of that name; with a tag, C(HEAD) is detached.
          - Without O(repositories[].ref) and O(repositories[].commit), the remote's default branch is checked out, detached.
        type: str
      depth:
        description:
          - Fetch only this many commits of history (a shallow clone). Applied to new checkouts and to checkouts
            that are already shallow; a full checkout is never made shallow.
          - With O(transport=controller), a new checkout gets a shallow bundle of this depth.
        type: int
      bundle:
        description:
          - Set by the action plugin with O(transport=controller); leave it unset.
          - A git bundle file on the host that holds O(repositories[].commit) (and the ref, named in full),
            fetched from instead of O(repositories[].url).
        type: path
      bundle_shallow:
        description:
          - Set by the action plugin with O(transport=controller); leave it unset.
          - The commits where the history in a shallow O(repositories[].bundle) is cut off.
        type: list
        elements: str
      archive:
        description:
          - Set by the action plugin with O(transport=controller) and O(method=archive); leave it unset.
          - A C(.tar.gz) file on the host of O(repositories[].commit), used instead of a download.
        type: path
  root:
    description:
      - Directory for the entries of O(repositories) without O(repositories[].dest); each goes to a
        subdirectory named after the repository. It may differ from host to host.
    type: path
  method:
    description:
      - V(git) keeps a git checkout.
      - V(archive) downloads C({url without .git}/get/{commit}.tar.gz) with the credential in the C(Authorization) header only,
        for hosts without git. With O(flavor=datacenter) it downloads
        C(<base>/rest/api/latest/projects/<KEY>/repos/<slug>/archive?at=<commit>&format=tar.gz), derived from the clone URL
        C(<base>/scm/<key>/<slug>.git) (C(<base>) may have a context path; a URL of another shape fails that repository),
        with a C(Bearer) C(Authorization) header for O(access_token), and C(Basic) for O(username) and O(password).
        It needs O(repositories[].commit). The tree is unpacked beside O(repositories[].dest) and swapped in atomically;
        a marker file C(.codeferry-archive.json) holding the commit makes it idempotent.
        Absolute paths, C(..), links that point outside the tree, and device files in the archive fail the repository.
        Files in an archive checkout are replaced on update; keep local changes elsewhere.
    type: str
    choices: [git, archive]
    default: git
  transport:
    description:
      - V(direct) - the host fetches from the git server itself, with the credential (see O(credential_mode)).
      - V(controller) - the action plugin keeps one bare mirror per repository on the controller, under O(mirror_dir),
        and fetches it at most once per C(ansible-playbook) run, and not at all when it already holds the commit.
        Forks wait for each other on a lock file beside each mirror. It asks the host which commits it has (no network
        on the host), builds an incremental git bundle from those to the commit, copies it over the Ansible connection,
        and the module fetches from that file, which is removed afterwards. A host that is at the commit gets nothing.
        A new host gets the whole history, or O(repositories[].depth) commits of it.
      - The controller's fetch sends the credential with its first request, as an C(Authorization) header (C(Basic), or with
        O(flavor=datacenter) and O(access_token) C(Bearer)) given to git in its environment only and scoped to the repository's URL.
      - With V(controller) the credential never reaches the host - no store file, no environment variable, no module
        argument - and C(origin) stays the clean URL. O(credential_mode) is ignored (with a warning when it is set to
        V(url) or V(ephemeral)), and a credential an earlier direct run left in a checkout is removed.
      - With V(controller) and O(method=archive), each archive is downloaded once on the controller, kept beside the
        mirror, and copied to the hosts that need it.
      - With V(controller), O(ca_content) (when given) is also what the controller's git trusts; otherwise the
        controller's own settings apply. O(validate_certs) and O(timeout) apply to the controller's fetch.
      - In check mode the mirrors are still fetched (they are the controller's cache, not the host's state), and a
        host that lacks the commit still gets its bundle, which the module fetches into a throwaway repository only.
    type: str
    choices: [direct, controller]
    default: direct
  mirror_dir:
    description:
      - With O(transport=controller), the directory on the controller for the mirrors, one bare repository per URL
        under C(<host>/<path>.git), with C(<path>.archives/) for archives. Created with mode C(0700); like the token
        cache, it must belong to the user running Ansible and be closed to others, and no part of it may be a link.
      - The mirrors are never pruned automatically; see the transports guide for their disk use and how to prune them.
      - Default C(~/.cache/codeferry.bitbucket/mirrors).
    type: path
  credential_mode:
    description:
      - What of the credential stays on the host after the module exits. Ignored by O(method=archive), which leaves nothing.
      - V(store) writes a git-credential-store file, C(.git/codeferry-credentials) inside each checkout, mode C(0600),
        owned by O(owner), and points the checkout's C(credential.<scheme://host>.helper) at it. The owner's later
        C(git fetch) and C(git pull) work until the token expires; C(origin) stays a clean URL. The file is outside the
        work tree and goes away with the checkout. A new token rewrites it, reported as RV(repositories[].credential_refreshed).
      - V(url) puts C(https://x-token-auth:<token>@host/...) into the remote URL in C(.git/config) (then mode C(0600)).
        Opt-in only - every tool that prints the remote URL, copies the config or backs up the tree carries the token
        with it, and git may show it in messages.
      - V(ephemeral) leaves nothing - the token exists on the host only while the module runs. The owner's own
        C(git fetch) then needs credentials of its own.
      - With O(flavor=datacenter) and O(access_token), V(store) writes C(.git/codeferry-auth.config) instead (mode C(0600),
        owned by O(owner), written atomically and never through a link), holding C(http.<scheme://host[:port]/>.extraHeader)
        with the C(Bearer) C(Authorization) header, and adds C(include.path=codeferry-auth.config) to C(.git/config), which
        holds no secret. The header goes to that origin only. A new token rewrites the file, reported as
        RV(repositories[].credential_refreshed).
      - V(url) with O(flavor=datacenter) and O(access_token) fails the task before any repository is touched - git cannot
        carry a Bearer token in a URL. Use V(store) or V(ephemeral), or a personal access token as O(username) and O(password).
      - Switching modes (or flavours) removes what the previous mode left - the store file and its helper, the
        C(codeferry-auth.config) file and its C(include.path), or the token in the remote URL.
    type: str
    choices: [store, url, ephemeral]
    default: store
  flavor:
    description:
      - Which Bitbucket serves O(repositories[].url). It decides how the credential is sent, and the archive URL of O(method=archive).
      - V(cloud) - Bitbucket Cloud. O(access_token) goes to git as C(x-token-auth) through the credential helper.
      - V(datacenter) - Bitbucket Data Center (or Server), with clone URLs C(https://host[/context]/scm/<project>/<repository>.git).
        O(access_token) (any HTTP access token - personal, project or repository - or an OAuth access token) goes to git as
        a C(Bearer) C(Authorization) header through C(http.<url>.extraHeader), set in the environment of the git process only and scoped
        to the repository's URL, because Data Center accepts project and repository tokens only that way. That run empties git's
        list of extra headers for the repository first, so a header from a git config file (an older token) is not sent with it
        or instead of it. On V(cloud), extra headers of the user's git config are left alone (unless an earlier V(datacenter) run
        left its C(.git/codeferry-auth.config) in the checkout).
      - A refused O(access_token) with V(cloud) and a URL containing C(/scm/) fails with a hint to set V(datacenter).
        O(username) and O(password) (a personal access token, or the password) go as C(Basic) through the credential helper, as on Cloud.
      - The C(checkout) role sets it from C(checkout_api_url).
    type: str
    choices: [cloud, datacenter]
    default: cloud
  access_token:
    description:
      - Access token used as C(x-token-auth) (OAuth access token, or a repository, project or workspace access token).
      - With O(flavor=datacenter), an HTTP access token (personal, project or repository) or an OAuth access token, sent as
        a C(Bearer) C(Authorization) header.
      - Mutually exclusive with O(username) and O(password). Without any credential only public repositories can be read.
    type: str
  username:
    description:
      - User for an API token or app password given as O(password).
      - For git, Bitbucket wants the Bitbucket username (or V(x-bitbucket-api-token-auth) with an API token);
        for O(method=archive) with an API token, the Atlassian account e-mail address.
      - With O(flavor=datacenter), the Data Center user name that owns the personal access token in O(password).
    type: str
  password:
    description:
      - API token or app password for O(username).
      - With O(flavor=datacenter), a personal access token (or the user's password). Project and repository tokens
        do not work this way on Data Center; give them as O(access_token).
    type: str
  force:
    description:
      - Update checkouts that hold local work. Everything at stake (tracked changes, untracked files, local commits)
        is first saved as a commit under C(refs/codeferry/backup/<UTC time>), whose parent is the old C(HEAD); then the
        checkout is reset. RV(repositories[].backup_ref) names the ref.
      - 'To get the work back: C(git restore --source=<backup_ref> -- <paths>) for chosen files (the whole tree would
        also undo the new commit), C(git branch rescued <backup_ref>^) for the local commits, or
        C(git worktree add --detach <dir> <backup_ref>) for a copy of everything as it was. See the role guide.'
      - Ignored files are saved only when the new commit would overwrite them.
    type: bool
    default: false
  owner:
    description:
      - User (name or number) that the checkouts belong to, C(.git) included.
      - When the module runs as root, git itself runs as this user, so git's C(safe.directory) ownership check passes
        for the owner's own git commands afterwards and hooks or config of the checkout never run as root.
      - Without it, a new checkout belongs to the user running the module, and git in an existing one runs as its current owner.
    type: str
  group:
    description:
      - Group (name or number) of every file of the checkouts.
    type: str
  mode:
    description:
      - Mode of the checkout directory O(repositories[].dest) itself, for example V('0750'). Quote it.
      - Files inside keep the modes git gives them (the umask, and the executable bit of the repository),
        because other modes would show as changes in C(git status).
      - Without it, a new checkout directory gets C(0755) and an existing one is left as it is.
    type: raw
  ca_path:
    description:
      - PEM file of the CA certificates to trust for the git host, instead of the host's own settings
        (it overrides E(GIT_SSL_CAINFO)). It is also written to each checkout's C(http.<scheme://host>.sslCAInfo),
        so the owner's later C(git fetch) trusts the same CA. The owner must be able to read it.
    type: path
  ca_content:
    description:
      - PEM text of those CA certificates, to be kept at O(ca_path) on the host. The file is written
        (mode C(0644), atomically, never through a link, missing parent directories C(0755)) only when it differs,
        which counts as a change. So one task installs the CA and checks out, with no C(copy) task before it.
      - Needs O(ca_path). In check mode nothing is written.
    type: str
  validate_certs:
    description:
      - Verify the git host's TLS certificate. Use O(ca_path) for a private CA instead of turning this off.
    type: bool
    default: true
  timeout:
    description:
      - For O(method=archive), the timeout of the download request in seconds.
      - For O(method=git), a transfer slower than 1000 bytes per second for this many seconds is aborted.
    type: int
    default: 30
notes:
  - A dropped connection during a clone removes the temporary directory and fails that repository with what happened;
    C(dest) is left as it was, and the next run clones again.
  - C(changed) is true only when a checkout's commit or files changed (or its owner or mode).
    Writing a new token into the credential store, or into the remote URL, is reported as RV(repositories[].credential_refreshed)
    and does not count as a change, so a run after the token rotated reports C(changed=false).
  - The module records the commit it last checked out in C(refs/codeferry/upstream), so that a commit checked out by hash
    alone (which no remote-tracking ref holds) is not taken for a local commit on the next update.
  - Use pipelining, or an Ansible temporary directory on a private file system, to keep module arguments off the host's disk.
  - Set C(no_log) on tasks that pass O(access_token) or O(password). When an entry of O(repositories) is not a dictionary,
    ansible-core rejects the arguments before it knows which values to mask, and its echo of them (C(invocation), shown
    at C(-vvv) and kept in a registered result) holds those values in clear. The C(checkout) role sets C(no_log).
seealso:
  - module: codeferry.bitbucket.ref_info
  - module: codeferry.bitbucket.oauth_token
'''

EXAMPLES = r'''
- name: Trust a private CA kept on the controller, installed by the same task
  codeferry.bitbucket.git_checkout:
    repositories:
      - url: https://git.example.internal/acme/api.git
        dest: /srv/api
        ref: main
    access_token: "{{ bitbucket_token.access_token }}"
    ca_path: /etc/codeferry-bitbucket/ca.pem
    ca_content: "{{ lookup('ansible.builtin.file', 'files/private-ca.pem') }}"
  no_log: true

- name: Pin the main branch once, on the controller
  codeferry.bitbucket.ref_info:
    workspace: acme
    repository: api
    name: main
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  register: api_ref

- name: A token for the hosts, minted once
  codeferry.bitbucket.oauth_token:
    client_id: "{{ bitbucket_client_id }}"
    client_secret: "{{ bitbucket_client_secret }}"
  delegate_to: localhost
  run_once: true
  no_log: true
  register: bitbucket_token

- name: Check out the same commit on every host, owned by the deploy user
  codeferry.bitbucket.git_checkout:
    repositories:
      - url: https://bitbucket.org/acme/api.git
        dest: /srv/checkouts/api
        ref: main
        commit: "{{ api_ref.commit }}"
        depth: 1
      - url: https://bitbucket.org/acme/web.git
        dest: /srv/checkouts/web
        ref: v2.4.0
    access_token: "{{ bitbucket_token.access_token }}"
    owner: deploy
    group: deploy
    mode: '0750'
  become: true
  register: checkouts

- name: Nothing of the token stays on the host, and local changes are saved, then replaced
  codeferry.bitbucket.git_checkout:
    repositories:
      - url: https://bitbucket.org/acme/api.git
        dest: /srv/checkouts/api
        commit: "{{ api_ref.commit }}"
    access_token: "{{ bitbucket_token.access_token }}"
    credential_mode: ephemeral
    force: true

- name: Hosts without a route to Bitbucket - the controller fetches once and sends bundles, the token stays here
  codeferry.bitbucket.git_checkout:
    transport: controller
    repositories:
      - url: https://bitbucket.org/acme/api.git
        dest: /srv/checkouts/api
        ref: main
        commit: "{{ api_ref.commit }}"
    access_token: "{{ bitbucket_token.access_token }}"
    owner: deploy
  become: true
  no_log: true

- name: Bitbucket Data Center with a project access token - Bearer, in the git child's environment only
  codeferry.bitbucket.git_checkout:
    flavor: datacenter
    repositories:
      - url: https://bitbucket.example.internal/scm/ops/deploy.git
        dest: /srv/checkouts/deploy
        ref: main
    access_token: "{{ ops_project_token }}"
    owner: deploy
  become: true
  no_log: true

- name: A host without git
  codeferry.bitbucket.git_checkout:
    method: archive
    repositories:
      - url: https://bitbucket.org/acme/api.git
        dest: /opt/api
        commit: "{{ api_ref.commit }}"
    access_token: "{{ bitbucket_token.access_token }}"
'''

RETURN = r'''
repositories:
  description: One result per entry of O(repositories), in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    dest:
      description: The checkout directory.
      type: str
      sample: /srv/checkouts/api
    url:
      description: The repository URL, without credentials.
      type: str
      sample: https://bitbucket.org/acme/api.git
    method:
      description: V(git) or V(archive).
      type: str
      sample: git
    ref:
      description: The ref asked for, or null.
      type: str
      sample: main
    action:
      description:
        - V(cloned), V(updated), V(unchanged), V(refused) (local work in the way) or V(failed).
        - In check mode, what would be done.
      type: str
      sample: updated
    before:
      description: Commit of the checkout before the run; null when there was none.
      type: str
      sample: 1c6b2b8f1e0d3c4a5b6978a0b1c2d3e4f5a6b7c8
    after:
      description: Commit of the checkout after the run (in check mode, the commit it would have).
      type: str
      sample: 9fbd1a7e1a1c7c39e1f4d0e8d64e2f1d2d9c6a11
    changed:
      description: Whether this checkout's commit, files, owner or mode changed.
      type: bool
      sample: true
    failed:
      description: Whether this repository failed.
      type: bool
      sample: false
    msg:
      description: Why this repository failed.
      type: str
      returned: when failed
      sample: "dest /srv/checkouts/api has local work that checking out 9fbd1a7e... would destroy (modified files: app.py); ..."
    credential_refreshed:
      description:
        - Whether the credential left in the checkout (store file, helper configuration, or the token in the remote URL)
          was written, rewritten or removed. Not counted in C(changed).
      type: bool
      sample: false
    backup_ref:
      description: With O(force), the ref that holds the local work saved before the reset; null when nothing needed saving.
      type: str
      sample: refs/codeferry/backup/20260412T093000Z
    summary:
      description: One line about this repository, without secrets, for reports.
      type: str
      sample: "/srv/checkouts/api: updated at 9fbd1a7e1a1c"
    transfer:
      description:
        - With O(transport=controller), what the controller sent this host for this repository; null when it needed nothing.
      returned: when O(transport=controller)
      type: dict
      contains:
        kind:
          description: V(bundle) or V(archive).
          type: str
          sample: bundle
        bytes:
          description: Size of the file sent.
          type: int
          sample: 4321
        commits:
          description: Commits in the bundle.
          type: int
          returned: for a bundle
          sample: 2
        prerequisites:
          description: Commits the host has that the bundle builds on; empty for a bundle of the whole history.
          type: list
          elements: str
          returned: for a bundle
          sample: [1c6b2b8f1e0d3c4a5b6978a0b1c2d3e4f5a6b7c8]
        shallow:
          description: Whether the bundle holds only O(repositories[].depth) commits of history.
          type: bool
          returned: for a bundle
          sample: false
        downloaded:
          description: For an archive, whether this task downloaded it (false when the controller had it already).
          type: bool
          returned: for an archive
          sample: true
    local_work:
      description: What was at stake, when there was local work; null otherwise.
      type: dict
      contains:
        staged:
          description: Tracked files with staged changes.
          type: list
          elements: str
          sample: [app.py]
        modified:
          description: Tracked files changed in the work tree.
          type: list
          elements: str
          sample: [README.md]
        local_commits:
          description: Commits that no remote-tracking ref contains, as C(<short hash> <subject>).
          type: list
          elements: str
          sample: ["3f2a9c1 Hotfix on the server"]
        untracked_in_the_way:
          description: Untracked files that the new commit would overwrite.
          type: list
          elements: str
          sample: [config/local.yml]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.codeferry.bitbucket.plugins.module_utils._git import (
    ARGUMENT_RULES, ARGUMENT_SPEC, CheckoutFailed, checkout_repositories)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import url_secrets
from ansible_collections.codeferry.bitbucket.plugins.module_utils._module import ModuleRunner, module_http


def run_module(runner):
    module = runner.module
    # A URL with a token in it is refused, but Ansible echoes the arguments: mask the token there too.
    module.no_log_values.update(url_secrets(module.params['repositories']))
    results, changed, failures, diffs = checkout_repositories(module.params, module.check_mode,
                                                              http_factory=lambda: module_http(module))
    if failures:
        raise CheckoutFailed('%d of %d repositories failed: %s' % (len(failures), len(results), '; '.join(failures)),
                             results, changed)
    result = dict(changed=changed, repositories=results)
    if module._diff:
        result['diff'] = diffs
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **ARGUMENT_RULES)
    ModuleRunner(module).run(run_module)


if __name__ == '__main__':
    main()
