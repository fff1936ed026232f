# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bitbucket Data Center on the REST side: flavour, start/limit paging, summaries, request counts."""

from __future__ import annotations

import threading
import time

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import (
    DC_LIMIT,
    BitbucketClient,
    dc_remaining_starts,
    validate_project_key,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import AccessTokenAuth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import NotFoundError, ProtocolError, ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import RetryPolicy, api_flavor
from ansible_collections.codeferry.bitbucket.plugins.module_utils._repos import (
    dc_ref_summary,
    dc_repository_summary,
    find_refs,
    list_repositories,
    repository_summary,
)

from bitbucket_fakes import FakeHttp, NoSleep, Sequence, reply

DC = 'https://git.example/bitbucket/rest/api/1.0'
CLOUD = 'https://api.example/2.0'


def client(handler, api=DC):
    http = FakeHttp(handler)
    return BitbucketClient(http, api, AccessTokenAuth('tok'), retry=RetryPolicy(sleep=NoSleep(), rand=lambda: 0.5)), http


def query_of(url):
    return dict((key, values[0]) for key, values in parse_qs(urlsplit(url).query).items())


def path_of(url):
    return unquote(urlsplit(url).path)


# --- flavour --------------------------------------------------------------------------------


@pytest.mark.parametrize('url, flavor', [
    ('https://api.bitbucket.org/2.0', 'cloud'),
    ('https://git.example/rest/api/1.0', 'datacenter'),
    ('https://git.example/bitbucket/rest/api/latest/', 'datacenter'),
    ('https://git.example/rest/api/2.0', 'cloud'),
    ('https://git.example/rest/api/1.0/projects', 'cloud'),
])
def test_flavour_follows_from_api_url(url, flavor):
    assert api_flavor(url) == flavor
    assert client(Sequence(reply(200, {})), api=url)[0].flavor == flavor


@pytest.mark.parametrize('key', ['OPS', 'P_1', '~alice', '~alice.example'])
def test_project_keys(key):
    assert validate_project_key('workspace', key) == key


@pytest.mark.parametrize('key', ['', '1OPS', 'OPS/deploy', 'O PS', '~', None])
def test_bad_project_keys(key):
    with pytest.raises(ValidationError, match='workspace must be a Data Center project key'):
        validate_project_key('workspace', key)


def test_a_bare_404_hints_at_the_data_center_root_too():
    api, dummy = client(Sequence(reply(404, 'Not Found', content_type='text/plain')))
    with pytest.raises(NotFoundError, match=r'does api_url end in /2\.0, or in /rest/api/1\.0 for Data Center\?'):
        api.get('projects')


def test_the_data_center_error_envelope_is_the_message():
    body = {'errors': [{'context': None, 'message': 'Repository OPS/nope does not exist.',
                        'exceptionName': 'com.atlassian.bitbucket.repository.NoSuchRepositoryException'}]}
    api, dummy = client(Sequence(reply(404, body)))
    with pytest.raises(NotFoundError) as info:
        api.get('projects', 'OPS', 'repos', 'nope')
    assert str(info.value) == 'GET %s/projects/OPS/repos/nope: HTTP 404: Repository OPS/nope does not exist.' % DC


# --- paging ---------------------------------------------------------------------------------


def dc_listing(total, cap=25, size_is_total=False, delay=0.0, inflight=None, grow_to=None):
    """A handler paging `total` numbers as Data Center does: limit capped, nextPageStart only before the last page."""
    lock = threading.Lock()
    state = {'total': total}

    def handler(method, url, headers, data):
        if inflight is not None:
            with lock:
                inflight['now'] += 1
                inflight['max'] = max(inflight['max'], inflight['now'])
        try:
            time.sleep(delay)
            query = query_of(url)
            limit = min(int(query.get('limit', '25')), cap)
            start = int(query.get('start', '0'))
            count = state['total']
            values = list(range(start, min(start + limit, count)))
            last = start + limit >= count
            body = {'size': count if size_is_total else len(values), 'limit': limit, 'isLastPage': last,
                    'start': start, 'values': values}
            if not last:
                body['nextPageStart'] = start + limit
            if grow_to is not None:
                state['total'] = grow_to  # the collection grows after the first answer
            return reply(200, body)
        finally:
            if inflight is not None:
                with lock:
                    inflight['now'] -= 1
    return handler


def test_asks_for_the_largest_page_and_follows_next_page_start_when_size_counts_the_page():
    api, http = client(dc_listing(60, cap=25))
    assert api.paginate('projects', 'OPS', 'repos') == list(range(60))
    starts = [query_of(call[1]).get('start') for call in http.calls]
    assert starts == [None, '25', '50']
    assert all(query_of(call[1])['limit'] == str(DC_LIMIT) for call in http.calls)
    assert all(path_of(call[1]) == '/bitbucket/rest/api/1.0/projects/OPS/repos' for call in http.calls)


def test_one_page_when_the_server_allows_the_limit():
    api, http = client(dc_listing(63, cap=1000))
    assert api.paginate('repos') == list(range(63))
    assert len(http.calls) == 1


def test_empty_collection():
    api, http = client(dc_listing(0))
    assert api.paginate('repos') == []
    assert len(http.calls) == 1


def test_remaining_pages_are_fetched_concurrently_when_size_is_the_total():
    inflight = {'now': 0, 'max': 0}
    api, http = client(dc_listing(260, cap=25, size_is_total=True, delay=0.02, inflight=inflight))
    assert api.paginate('repos') == list(range(260))
    assert len(http.calls) == 11
    assert sorted(int(query_of(call[1]).get('start', 0)) for call in http.calls) == list(range(0, 260, 25))
    assert 1 < inflight['max'] <= 8


def test_computed_pages_then_follows_if_the_collection_grew():
    api, http = client(dc_listing(50, cap=25, size_is_total=True, grow_to=60))
    assert api.paginate('repos') == list(range(60))
    assert len(http.calls) == 3


def test_remaining_starts_only_from_a_consistent_page():
    page = {'size': 100, 'limit': 25, 'isLastPage': False, 'start': 0, 'values': list(range(25)), 'nextPageStart': 25}
    assert dc_remaining_starts(page) == [25, 50, 75]
    assert dc_remaining_starts(dict(page, size=25)) is None  # size counts the page: follow nextPageStart
    assert dc_remaining_starts(dict(page, limit=None)) is None
    assert dc_remaining_starts(dict(page, nextPageStart=30)) is None
    assert dc_remaining_starts(dict(page, isLastPage=True)) is None
    assert dc_remaining_starts(dict(page, size=10 ** 9)) is None  # not a million requests on a server's word
    assert dc_remaining_starts(dict(page, size=True)) is None


@pytest.mark.parametrize('body, message', [
    ({'size': 1, 'limit': 1, 'isLastPage': False, 'start': 0, 'values': [1], 'nextPageStart': 0}, 'nextPageStart 0 does not advance past start 0'),
    ({'size': 1, 'limit': 1, 'isLastPage': False, 'values': [1]}, 'isLastPage is false but nextPageStart is not a number'),
    ({'size': 1, 'limit': 1, 'isLastPage': False, 'values': [1], 'nextPageStart': '1'}, 'nextPageStart is not a number'),
    ({'size': 1, 'isLastPage': 'no', 'values': [1]}, 'isLastPage is a JSON str'),
    ({'size': 1, 'isLastPage': True, 'values': 'x'}, 'not a paginated collection'),
    ([1, 2], 'not a paginated collection'),
])
def test_malformed_pages_are_protocol_errors(body, message):
    api, http = client(Sequence(reply(200, body)))
    with pytest.raises(ProtocolError, match=message):
        api.paginate('repos')
    assert len(http.calls) == 1


def test_a_later_page_that_goes_back_is_a_loop():
    pages = {
        None: reply(200, {'size': 2, 'limit': 2, 'isLastPage': False, 'start': 0, 'values': [0, 1], 'nextPageStart': 2}),
        '2': reply(200, {'size': 2, 'limit': 2, 'isLastPage': False, 'start': 2, 'values': [2, 3], 'nextPageStart': 2}),
    }
    api, http = client(lambda m, url, h, d: pages[query_of(url).get('start')])
    with pytest.raises(ProtocolError, match='nextPageStart 2 does not advance past start 2'):
        api.paginate('repos')
    assert len(http.calls) == 2


def test_a_missing_is_last_page_means_last_without_next_page_start():
    api, http = client(Sequence(reply(200, {'values': [1, 2]})))
    assert api.paginate('repos') == [1, 2]


# --- summaries ------------------------------------------------------------------------------


def dc_repo(key='OPS', slug='deploy', public=False, project_public=False, repo_id=11):
    return {
        'slug': slug, 'id': repo_id, 'name': slug.title(), 'hierarchyId': 'abc', 'scmId': 'git', 'state': 'AVAILABLE',
        'forkable': True, 'public': public, 'description': 'Deploy scripts',
        'project': {'key': key, 'id': 1, 'name': 'Operations', 'public': project_public, 'type': 'NORMAL',
                    'links': {'self': [{'href': 'https://git.example/projects/%s' % key}]}},
        'links': {'clone': [{'href': 'ssh://git@git.example:7999/%s/%s.git' % (key.lower(), slug), 'name': 'ssh'},
                            {'href': 'https://alice@git.example/scm/%s/%s.git' % (key.lower(), slug), 'name': 'http'}],
                  'self': [{'href': 'https://git.example/projects/%s/repos/%s/browse' % (key, slug)}]},
    }


CLOUD_REPO = {
    'full_name': 'acme/api', 'slug': 'api', 'name': 'api', 'uuid': '{u}', 'workspace': {'slug': 'acme'},
    'project': {'key': 'PROJ'}, 'is_private': True, 'mainbranch': {'name': 'main'}, 'description': 'd',
    'language': 'python', 'size': 1, 'updated_on': '2026-01-01',
    'links': {'clone': [{'name': 'https', 'href': 'https://x@h/acme/api.git'}, {'name': 'ssh', 'href': 'git@h:acme/api.git'}],
              'html': {'href': 'https://h/acme/api'}},
}


def test_dc_repository_summary_has_exactly_the_cloud_fields():
    summary = dc_repository_summary(dc_repo(), 'main')
    assert set(summary) == set(repository_summary(CLOUD_REPO))
    assert summary == {
        'full_name': 'OPS/deploy', 'slug': 'deploy', 'name': 'Deploy', 'uuid': '11', 'workspace': 'OPS',
        'project_key': 'OPS', 'is_private': True, 'mainbranch': 'main', 'description': 'Deploy scripts',
        'language': None, 'size': None, 'updated_on': None,
        'clone_url': 'https://git.example/scm/ops/deploy.git',
        'ssh_url': 'ssh://git@git.example:7999/ops/deploy.git',
        'html_url': 'https://git.example/projects/OPS/repos/deploy/browse',
    }


def test_dc_repository_public_through_its_project_or_itself():
    assert dc_repository_summary(dc_repo(project_public=True))['is_private'] is False
    assert dc_repository_summary(dc_repo(public=True))['is_private'] is False
    assert dc_repository_summary(dict(dc_repo(), id=None))['uuid'] is None


def test_dc_ref_summary():
    branch = {'id': 'refs/heads/release/1.x', 'displayId': 'release/1.x', 'type': 'BRANCH', 'latestCommit': 'a' * 40,
              'latestChangeset': 'a' * 40, 'isDefault': False,
              'metadata': {'com.atlassian.bitbucket.server.bitbucket-branch:latest-commit-metadata': {
                  'id': 'a' * 40, 'committerTimestamp': 1767225600000}}}
    assert dc_ref_summary(branch) == {'name': 'release/1.x', 'type': 'branch', 'commit': 'a' * 40,
                                      'date': '2026-01-01T00:00:00+00:00'}
    tag = {'id': 'refs/tags/v1.0.0', 'displayId': 'v1.0.0', 'type': 'TAG', 'latestCommit': 'b' * 40, 'hash': 'c' * 40}
    assert dc_ref_summary(tag) == {'name': 'v1.0.0', 'type': 'tag', 'commit': 'b' * 40, 'date': None}
    with pytest.raises(ProtocolError, match='a JSON list where a branch or tag object'):
        dc_ref_summary([])


# --- the request each option makes, and how many --------------------------------------------


class FakeDataCenter(object):
    """Projects OPS (deploy, empty) and PUB (docs) answering REST 1.0 paths like Data Center (limit capped to 25)."""

    def __init__(self, extra=0):
        self.repos = {('OPS', 'deploy'): dc_repo(), ('OPS', 'empty'): dc_repo(slug='empty', repo_id=12),
                      ('PUB', 'docs'): dc_repo(key='PUB', slug='docs', project_public=True, repo_id=13)}
        for number in range(extra):
            slug = 'svc-%03d' % number
            self.repos[('OPS', slug)] = dc_repo(slug=slug, repo_id=100 + number)
        self.branches = {('OPS', 'deploy'): ['main', 'release/1.x', 'maintenance'], ('PUB', 'docs'): ['main']}
        self.tags = {('OPS', 'deploy'): ['v1.0.0', 'v1.0.0-rc1']}
        self.lock = threading.Lock()

    def branch(self, name, default):
        return {'id': 'refs/heads/' + name, 'displayId': name, 'type': 'BRANCH', 'latestCommit': 'c%039d' % len(name),
                'isDefault': default}

    def page(self, url, values):
        query = query_of(url)
        start, limit = int(query.get('start', 0)), min(int(query.get('limit', 25)), 25)
        chunk = values[start:start + limit]
        body = {'size': len(chunk), 'limit': limit, 'start': start, 'isLastPage': start + limit >= len(values), 'values': chunk}
        if not body['isLastPage']:
            body['nextPageStart'] = start + limit
        return reply(200, body)

    def __call__(self, method, url, headers, data):
        parts = path_of(url).split('/rest/api/1.0/', 1)[1].split('/')
        text = query_of(url).get('filterText', '')
        if parts == ['repos']:
            return self.page(url, [repo for key, repo in sorted(self.repos.items())])
        if parts[0] == 'projects' and len(parts) == 3:
            return self.page(url, [repo for key, repo in sorted(self.repos.items()) if key[0] == parts[1]])
        key = (parts[1], parts[3])
        if key not in self.repos:
            return reply(404, {'errors': [{'context': None, 'message': 'Repository %s/%s does not exist.' % key,
                                           'exceptionName': 'NoSuchRepositoryException'}]})
        rest = parts[4:]
        if not rest:
            return reply(200, self.repos[key])
        names = self.branches.get(key, [])
        if rest == ['branches', 'default']:
            if not names:
                return reply(404, {'errors': [{'message': 'Repository %s/%s has no default branch.' % key}]})
            return reply(200, self.branch(names[0], True))
        if rest == ['branches']:
            return self.page(url, [self.branch(name, index == 0) for index, name in enumerate(names) if text.lower() in name.lower()])
        if rest == ['tags']:
            return self.page(url, [{'id': 'refs/tags/' + name, 'displayId': name, 'type': 'TAG', 'latestCommit': 't%039d' % len(name)}
                                   for name in self.tags.get(key, []) if text.lower() in name.lower()])
        return reply(404, {'errors': [{'message': 'no such path'}]})


def paths(http):
    return sorted(path_of(call[1]).split('/rest/api/1.0/', 1)[1] for call in http.calls)


def test_listing_a_project_costs_its_pages_and_one_default_branch_per_repository():
    api, http = client(FakeDataCenter(extra=30))
    repos = list_repositories(api, workspace='OPS')
    assert len(repos) == 32
    assert {repo['full_name'] for repo in repos} >= {'OPS/deploy', 'OPS/empty', 'OPS/svc-029'}
    by_slug = dict((repo['slug'], repo) for repo in repos)
    assert by_slug['deploy']['mainbranch'] == 'main'
    assert by_slug['empty']['mainbranch'] is None  # no commits: Data Center has no default branch
    assert len(http.calls) == 2 + 32  # 25 per page capped: two pages; then one branches/default each


def test_without_workspace_every_visible_repository():
    api, http = client(FakeDataCenter())
    repos = list_repositories(api)
    assert [repo['full_name'] for repo in repos] == ['OPS/deploy', 'OPS/empty', 'PUB/docs']
    assert [repo['is_private'] for repo in repos] == [True, True, False]
    assert paths(http) == ['projects/OPS/repos/deploy/branches/default', 'projects/OPS/repos/empty/branches/default',
                           'projects/PUB/repos/docs/branches/default', 'repos']


def test_names_cost_two_requests_each_in_order():
    api, http = client(FakeDataCenter(extra=10))
    repos = list_repositories(api, workspace='OPS', names=['svc-009', 'deploy'])
    assert [repo['slug'] for repo in repos] == ['svc-009', 'deploy']
    assert len(http.calls) == 4


def test_a_missing_name_fails_with_the_server_message():
    api, dummy = client(FakeDataCenter())
    with pytest.raises(NotFoundError, match='Repository OPS/nope does not exist.'):
        list_repositories(api, workspace='OPS', names=['nope'])


@pytest.mark.parametrize('option, hint', [
    ('query', 'query language does not exist on Data Center'),
    ('sort', 'sort filter'),
    ('role', 'use a token whose permission'),
])
def test_cloud_only_options_fail_before_any_request(option, hint):
    api, http = client(FakeDataCenter())
    with pytest.raises(ValidationError, match='%s is only supported on Bitbucket Cloud; .*%s' % (option, hint)):
        list_repositories(api, workspace='OPS', **{option: 'member'})
    assert http.calls == []


def test_name_without_workspace_on_dc_and_no_workspace_on_cloud_fail_clearly():
    api, http = client(FakeDataCenter())
    with pytest.raises(ValidationError, match='name needs workspace'):
        list_repositories(api, names=['deploy'])
    cloud, cloud_http = client(Sequence(reply(200, {})), api=CLOUD)
    with pytest.raises(ValidationError, match='workspace is required on Bitbucket Cloud'):
        list_repositories(cloud)
    assert http.calls == cloud_http.calls == []


@pytest.mark.parametrize('kind, name, expected, requests', [
    ('branch', 'main', [('branch', 'main')], 1),
    ('branch', 'release/1.x', [('branch', 'release/1.x')], 1),
    ('tag', 'v1.0.0', [('tag', 'v1.0.0')], 1),  # filterText also matches v1.0.0-rc1: exact match only
    ('all', 'v1.0.0', [('tag', 'v1.0.0')], 2),
    ('all', 'refs/heads/main', [('branch', 'main')], 1),
])
def test_a_named_ref(kind, name, expected, requests):
    api, http = client(FakeDataCenter())
    refs, main = find_refs(api, 'OPS', 'deploy', kind, name=name)
    assert [(ref['type'], ref['name']) for ref in refs] == expected
    assert main is None
    assert len(http.calls) == requests
    assert all('filterText=' in call[1] for call in http.calls)


def test_a_missing_named_ref_and_a_missing_repository():
    api, dummy = client(FakeDataCenter())
    with pytest.raises(NotFoundError, match="OPS/deploy has no branch named 'mai'"):
        find_refs(api, 'OPS', 'deploy', 'branch', name='mai')
    with pytest.raises(NotFoundError, match='Repository OPS/nope does not exist.'):
        find_refs(api, 'OPS', 'nope', 'all', name='main')


@pytest.mark.parametrize('kind, names, requests', [
    ('branch', ['main', 'release/1.x', 'maintenance'], 1),  # the listing flags the default branch
    ('tag', ['v1.0.0', 'v1.0.0-rc1'], 2),  # tags, then branches/default
    ('all', ['main', 'release/1.x', 'maintenance', 'v1.0.0', 'v1.0.0-rc1'], 2),
])
def test_listing_refs_with_the_main_branch(kind, names, requests):
    api, http = client(FakeDataCenter())
    refs, main = find_refs(api, 'OPS', 'deploy', kind)
    assert [ref['name'] for ref in refs] == names
    assert main == 'main'
    assert len(http.calls) == requests


def test_refs_of_an_empty_repository():
    api, http = client(FakeDataCenter())
    assert find_refs(api, 'OPS', 'empty', 'branch') == ([], None)
    assert find_refs(api, 'OPS', 'empty', 'tag') == ([], None)
    assert len(http.calls) == 3


def test_refs_cloud_only_options_and_bad_workspace():
    api, http = client(FakeDataCenter())
    with pytest.raises(ValidationError, match='query is only supported on Bitbucket Cloud'):
        find_refs(api, 'OPS', 'deploy', 'branch', query='name ~ "x"')
    with pytest.raises(ValidationError, match='workspace must be a Data Center project key'):
        find_refs(api, 'acme/x', 'deploy', 'branch')
    assert http.calls == []


@pytest.mark.parametrize('api', ['https://git.example.com/rest/api/1.0?x=1', 'https://api.example/2.0?page=2'])
def test_an_api_url_with_a_query_string_is_refused(api):
    with pytest.raises(ValidationError, match='api_url must not contain a query string'):
        client(None, api)


def test_parallel_requests_stop_after_the_first_error():
    import threading
    from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient
    calls = []
    lock = threading.Lock()

    def function(item):
        with lock:
            calls.append(item)
        if item == 0:
            raise NotFoundError('gone')
        threading.Event().wait(0.05)
        return item

    api = BitbucketClient(None, DC, AccessTokenAuth('tok'), max_workers=2)
    with pytest.raises(NotFoundError):
        api.parallel(function, range(40))
    assert len(calls) < 10, calls
