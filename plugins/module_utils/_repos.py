# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Repositories and refs of both flavours, flattened into the same fields for playbooks.

The requests that differ between Bitbucket Cloud (REST 2.0) and Data Center (REST 1.0) are built
here and nowhere else: list_repositories() and find_refs() are what the modules call.
"""

from __future__ import annotations

import datetime

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import validate_project_key, validate_slug
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import NotFoundError, ProtocolError, ValidationError
# Bitbucket embeds the caller's name in https clone links; strip_userinfo() takes it out.
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import DATACENTER, strip_userinfo

REF_KINDS = ('branch', 'tag', 'all')
_REF_PREFIXES = (('refs/heads/', 'branch'), ('refs/tags/', 'tag'))


def _link(links, name):
    value = links.get(name) if isinstance(links, dict) else None
    if isinstance(value, list):  # clone links come as a list of {name, href}
        value = value[0] if value else None
    return value.get('href') if isinstance(value, dict) else None


def _clone_link(links, name):
    entries = links.get('clone') if isinstance(links, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get('name') == name:
            return entry.get('href')
    return None


def _get(data, *path):
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _object(value, what):
    # A server (or a proxy in front of it) can answer 200 with any JSON: say so instead of crashing.
    if not isinstance(value, dict):
        found = 'nothing' if value is None else 'a JSON %s' % type(value).__name__
        raise ProtocolError('the API returned %s where a %s object was expected' % (found, what))
    return value


def repository_summary(repo):
    _object(repo, 'repository')
    full_name = repo.get('full_name') if isinstance(repo.get('full_name'), str) else ''
    workspace = _get(repo, 'workspace', 'slug') or (full_name.split('/', 1)[0] if '/' in full_name else None)
    slug = repo.get('slug') or (full_name.split('/', 1)[1] if '/' in full_name else repo.get('name'))
    links = repo.get('links')
    return dict(
        full_name=full_name,
        slug=slug,
        name=repo.get('name'),
        uuid=repo.get('uuid'),
        workspace=workspace,
        project_key=_get(repo, 'project', 'key'),
        is_private=repo.get('is_private'),
        mainbranch=mainbranch(repo),
        description=repo.get('description'),
        language=repo.get('language'),
        size=repo.get('size'),
        updated_on=repo.get('updated_on'),
        clone_url=strip_userinfo(_clone_link(links, 'https')),
        ssh_url=_clone_link(links, 'ssh'),
        html_url=_link(links, 'html'),
    )


def dc_repository_summary(repo, default_branch=None):
    """A Data Center repository in the fields of repository_summary(); default_branch comes from its own request."""
    _object(repo, 'repository')
    project = repo.get('project') if isinstance(repo.get('project'), dict) else {}
    key = project.get('key')
    slug = repo.get('slug')
    links = repo.get('links')
    public = repo.get('public') is True or project.get('public') is True  # a public project makes every repository public
    return dict(
        full_name='%s/%s' % (key, slug) if key and slug else None,
        slug=slug,
        name=repo.get('name'),
        uuid=None if repo.get('id') is None else str(repo['id']),
        workspace=key,
        project_key=key,
        is_private=not public,
        mainbranch=default_branch,
        description=repo.get('description'),
        language=None,
        size=None,
        updated_on=None,
        clone_url=strip_userinfo(_clone_link(links, 'http')),
        ssh_url=_clone_link(links, 'ssh'),
        html_url=_link(links, 'self'),
    )


def ref_summary(ref, kind=None):
    _object(ref, 'branch or tag')
    return dict(
        name=ref.get('name'),
        type=ref.get('type') or kind,
        commit=_get(ref, 'target', 'hash'),
        date=_get(ref, 'target', 'date') or ref.get('date'),
    )


def dc_ref_summary(ref, kind=None):
    """A Data Center branch or tag in the fields of ref_summary()."""
    _object(ref, 'branch or tag')
    ref_type = ref.get('type')
    return dict(
        name=ref.get('displayId'),
        type=ref_type.lower() if isinstance(ref_type, str) and ref_type.lower() in ('branch', 'tag') else kind,
        commit=ref.get('latestCommit'),
        date=_dc_commit_date(ref),
    )


_DC_COMMIT_METADATA = 'com.atlassian.bitbucket.server.bitbucket-branch:latest-commit-metadata'


def _dc_commit_date(ref):
    # Branches listed with details=true carry their latest commit's metadata: the date at no extra request.
    stamp = _get(ref, 'metadata', _DC_COMMIT_METADATA, 'committerTimestamp')
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        return None
    try:
        when = datetime.datetime.fromtimestamp(stamp / 1000.0, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat()


def mainbranch(repo):
    """Name of a repository's main branch, or None."""
    return _get(_object(repo, 'repository'), 'mainbranch', 'name')


def split_ref_name(name, kind):
    """(name, kind) with a refs/heads/ or refs/tags/ prefix taken off, which also fixes the kind."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError('name must be a non-empty branch or tag name, got %r' % (name,))
    if any(ord(char) < 32 or char in ' ~^:?*[\\' for char in name):
        raise ValidationError('name %r is not a valid git ref name' % (name,))
    for prefix, prefix_kind in _REF_PREFIXES:
        if name.startswith(prefix):
            if kind not in ('all', prefix_kind):
                raise ValidationError('name %r is a %s, but kind is %s' % (name, prefix_kind, kind))
            return name[len(prefix):], prefix_kind
    return name, kind


# ---------------------------------------------------------------------------------------------
# Requests: the one place that knows how each flavour asks

_CLOUD_REF_COLLECTIONS = (('branch', 'branches'), ('tag', 'tags'))
_CLOUD_ONLY = {
    'query': 'the Bitbucket query language does not exist on Data Center: name the repositories, or list the project '
             '(workspace) and filter the result in the playbook (selectattr, select)',
    'sort': 'Data Center returns repositories ordered by project and name; sort the result with the sort filter',
    'role': 'Data Center lists what the credentials can read: use a token whose permission (REPO_READ, REPO_WRITE, '
            'REPO_ADMIN) is the one you need',
}
_CLOUD_ONLY_REFS = {
    'query': 'the Bitbucket query language does not exist on Data Center: give name for one branch or tag, '
             'or list them and filter the result in the playbook (selectattr, select)',
    'sort': 'Data Center returns branches and tags in its own order; sort the result with the sort filter',
}


def _workspace(client, value):
    # On Data Center, workspace means the project key.
    if client.flavor == DATACENTER:
        return validate_project_key('workspace', value)
    return validate_slug('workspace', value)


def _refuse_cloud_only(options, explanations):
    for option in sorted(options):
        if options[option] is not None:
            raise ValidationError('%s is only supported on Bitbucket Cloud; %s' % (option, explanations[option]))


def list_repositories(client, workspace=None, names=None, query=None, sort=None, role=None):
    """Summaries of the named repositories (in that order) or of every listed one.

    Cloud: one GET per name, or the workspace listing (100 per page, pages in parallel).
    Data Center: per repository its object and its default branch (DC repository objects do not carry
    it), so names cost 2 requests each and a listing its pages plus one per repository, in parallel.
    """
    if client.flavor != DATACENTER and workspace is None:
        raise ValidationError('workspace is required on Bitbucket Cloud (only on Data Center, where it is the project '
                              'key, can it be left out to list every visible repository)')
    workspace = None if workspace is None else _workspace(client, workspace)
    names = [validate_slug('name', name) for name in names or []]
    if client.flavor != DATACENTER:
        if names:
            found = [client.get('repositories', workspace, name) for name in names]
        else:
            found = client.paginate('repositories', workspace, q=query, sort=sort, role=role)
        return [repository_summary(repo) for repo in found]
    _refuse_cloud_only(dict(query=query, sort=sort, role=role), _CLOUD_ONLY)
    if names:
        if workspace is None:
            raise ValidationError('name needs workspace (the project key) on Data Center')

        def named(slug):
            return _dc_with_default_branch(client, client.get('projects', workspace, 'repos', slug))
        return client.parallel(named, names)
    if workspace is None:
        found = client.paginate('repos')  # every repository the credentials can see
    else:
        found = client.paginate('projects', workspace, 'repos')
    return client.parallel(lambda repo: _dc_with_default_branch(client, repo), found)


def _dc_with_default_branch(client, repo):
    _object(repo, 'repository')
    key, slug = _get(repo, 'project', 'key'), repo.get('slug')
    if not isinstance(key, str) or not isinstance(slug, str):
        raise ProtocolError('the API returned a repository without project key or slug')
    return dc_repository_summary(repo, dc_default_branch(client, key, slug))


def dc_default_branch(client, key, slug):
    """The default branch's name; None for a repository without one (empty). The repository must exist."""
    try:
        branch = client.get('projects', key, 'repos', slug, 'branches', 'default')
    except NotFoundError:
        return None  # Data Center answers 404 when the repository has no commits yet
    if branch is None:
        return None
    return _object(branch, 'branch').get('displayId')


def find_refs(client, workspace, repository, kind, name=None, query=None, sort=None):
    """(refs, mainbranch) of a repository; mainbranch is None with a name, which is looked up alone.

    Requests, Cloud: with a name 1 (kind=all without quotes in the name: one refs query); without, the
    repository plus the listings. Data Center: with a name 1 per kind (filterText, exact match); without,
    the branch listing (its isDefault gives the main branch), the tag listing, and for kind=tag alone
    branches/default; kind=all costs 2 either way, fetched in parallel.
    """
    workspace = _workspace(client, workspace)
    repository = validate_slug('repository', repository)
    if name is not None:
        name, kind = split_ref_name(name, kind)
    if client.flavor == DATACENTER:
        _refuse_cloud_only(dict(query=query, sort=sort), _CLOUD_ONLY_REFS)
        refs, main = _dc_refs(client, workspace, repository, kind, name)
    elif name is not None:
        refs, main = _cloud_named_refs(client, workspace, repository, kind, name), None
    else:
        # Without a name the repository is fetched too: it has the main branch.
        repo = client.get('repositories', workspace, repository)
        refs = []
        for ref_kind, collection in _CLOUD_REF_COLLECTIONS:
            if kind in (ref_kind, 'all'):
                found = client.paginate('repositories', workspace, repository, 'refs', collection, q=query, sort=sort)
                refs.extend(ref_summary(ref, ref_kind) for ref in found)
        main = mainbranch(repo)
    if name is not None and not refs:
        raise NotFoundError('%s/%s has no %s named %r' % (workspace, repository, _what(kind), name), status=404)
    return refs, main


def _what(kind):
    return {'branch': 'branch', 'tag': 'tag'}.get(kind, 'branch or tag')


def _cloud_named_refs(client, workspace, repository, kind, name):
    """The branch and/or tag called name, in one request; a 404 names the repository or the ref that is missing."""
    if kind == 'all' and not set(name) & set('"\\'):
        # One request for both kinds: an exact-name query on the refs collection (branches first).
        found = client.paginate('repositories', workspace, repository, 'refs', q='name = "%s"' % name)
        refs = [ref_summary(ref) for ref in found if isinstance(ref, dict) and ref.get('name') == name]
        refs.sort(key=lambda ref: ref['type'] != 'branch')
        return refs
    refs = []
    for ref_kind, collection in _CLOUD_REF_COLLECTIONS:
        if kind not in (ref_kind, 'all'):
            continue
        try:
            refs.append(ref_summary(client.get('repositories', workspace, repository, 'refs', collection, name), ref_kind))
        except NotFoundError:
            if kind != 'all':
                raise
    return refs


def _dc_refs(client, workspace, repository, kind, name):
    kinds = [ref_kind for ref_kind in ('branch', 'tag') if kind in (ref_kind, 'all')]

    def listing(ref_kind):
        # details=true: branches then carry their latest commit's metadata (the date), at no extra request.
        if ref_kind == 'branch':
            return client.paginate('projects', workspace, 'repos', repository, 'branches', filterText=name, details='true')
        return client.paginate('projects', workspace, 'repos', repository, 'tags', filterText=name)

    # Both listings 404 alike when the repository is missing, so either error says so.
    found = dict(zip(kinds, client.parallel(listing, kinds)))
    refs = []
    for ref_kind in kinds:
        for ref in found[ref_kind]:
            summary = dc_ref_summary(ref, ref_kind)
            # filterText matches substrings; a name means exactly that ref.
            if name is None or summary['name'] == name:
                refs.append(summary)
    if name is not None:
        return refs, None
    if 'branch' in found:
        defaults = [ref.get('displayId') for ref in found['branch'] if isinstance(ref, dict) and ref.get('isDefault') is True]
        if defaults or not found['branch'] or all(isinstance(ref, dict) and 'isDefault' in ref for ref in found['branch']):
            return refs, defaults[0] if defaults else None
    # Only tags were listed (or the server does not flag the default branch): ask for it.
    return refs, dc_default_branch(client, workspace, repository)
