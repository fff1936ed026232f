# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Flatten Bitbucket repository and ref objects into what playbooks use."""

from __future__ import annotations

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import ProtocolError, ValidationError
# Bitbucket embeds the caller's name in https clone links; strip_userinfo() takes it out.
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import strip_userinfo

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


def ref_summary(ref, kind=None):
    _object(ref, 'branch or tag')
    return dict(
        name=ref.get('name'),
        type=ref.get('type') or kind,
        commit=_get(ref, 'target', 'hash'),
        date=_get(ref, 'target', 'date') or ref.get('date'),
    )


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
