"""REST API 2.0 of the emulator: pagination, BBQL filtering, sorting, partial responses, repositories, refs, users."""

import datetime
import re
import urllib.parse

import pytest
import requests

UUID = re.compile(r'^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$')


@pytest.fixture
def alice(bb):
    """Bearer headers of a fresh client-credentials token of alice's consumer."""
    return bb.bearer(bb.alice_token())


@pytest.fixture(scope='module')
def acme_repos(emulator):
    """Every repository object of acme as alice sees it (fetched once, with an app password)."""
    values = []
    url = emulator.api_url.rstrip('/') + '/repositories/acme?pagelen=100'
    while url:
        response = requests.get(url, auth=('alice', 'alice-app-password-1'), verify=emulator.ca_file, timeout=60)
        assert response.status_code == 200, response.text
        page = response.json()
        values.extend(page['values'])
        url = page.get('next')
    return values


def parse_time(value):
    return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))


def query_of(url):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)


def test_suite_constants_match_demo_data(bb, demo_data):
    """The expectations below are written out by hand; make sure they still describe the bundled data."""
    acme = [ws for ws in demo_data['workspaces'] if ws['slug'] == 'acme'][0]
    described = {repo['slug']: (repo['project'], repo['private'], repo['language'], repo['branches'], repo['tags'])
                 for repo in acme['repositories']}
    assert described == bb.ACME_REPOS
    assert acme['generate_repositories']['count'] == bb.GENERATED_COUNT
    assert acme['generate_repositories']['prefix'] == bb.GENERATED_PREFIX
    assert acme['members'] == ['alice']
    consumers = {consumer['key']: (consumer['secret'], consumer['scopes'], consumer['callback_url']) for consumer in demo_data['consumers']}
    assert consumers[bb.ALICE_CONSUMER[0]] == (bb.ALICE_CONSUMER[1], ['repository', 'account'], bb.ALICE_CALLBACK)
    assert consumers[bb.BOB_CONSUMER[0]] == (bb.BOB_CONSUMER[1], ['account'], bb.BOB_CALLBACK)


# ---------------------------------------------------------------- the full listing

def expected_acme_slugs(bb, slugs):
    generated = [slug for slug in slugs if slug.startswith(bb.GENERATED_PREFIX)]
    return set(bb.ACME_REPOS) | set(generated), generated


def test_full_listing_matches_data(bb, alice):
    pages, values = bb.list_all('/repositories/acme', headers=alice, params={'pagelen': 100})
    slugs = [repo['slug'] for repo in values]
    assert len(pages) == 3
    assert len(slugs) == 254
    assert len(set(slugs)) == 254
    expected, generated = expected_acme_slugs(bb, slugs)
    assert set(slugs) == expected
    assert len(generated) == bb.GENERATED_COUNT
    for number, page in enumerate(pages, start=1):
        assert page['page'] == number
        assert page['pagelen'] == 100
        assert page['size'] == 254
    assert [len(page['values']) for page in pages] == [100, 100, 54]
    assert 'previous' not in pages[0]
    assert 'next' not in pages[-1]


def test_default_pagelen_is_10_and_iteration_is_complete(bb, alice):
    pages, values = bb.list_all('/repositories/acme', headers=alice)
    assert len(pages) == 26
    assert all(page['pagelen'] == 10 for page in pages)
    assert [len(page['values']) for page in pages] == [10] * 25 + [4]
    slugs = [repo['slug'] for repo in values]
    assert len(slugs) == len(set(slugs)) == 254


def test_first_page_envelope(bb, alice):
    response = bb.get('/repositories/acme', headers=alice)
    assert response.status_code == 200
    assert response.headers['Content-Type'].startswith('application/json')
    page = response.json()
    assert set(page) == {'size', 'page', 'pagelen', 'next', 'values'}
    assert (page['size'], page['page'], page['pagelen'], len(page['values'])) == (254, 1, 10, 10)
    next_url = urllib.parse.urlsplit(page['next'])
    api = urllib.parse.urlsplit(bb.api_url)
    assert (next_url.scheme, next_url.netloc, next_url.path) == (api.scheme, api.netloc, api.path + '/repositories/acme')
    assert query_of(page['next'])['page'] == ['2']


def test_small_pages_with_previous_and_next(bb, alice):
    q = 'project.key = "PROJ"'
    first = bb.get('/repositories/acme', headers=alice, params={'q': q, 'pagelen': 1})
    assert first.status_code == 200
    page1 = first.json()
    assert (page1['size'], page1['page'], page1['pagelen'], len(page1['values'])) == (2, 1, 1, 1)
    assert 'previous' not in page1
    assert query_of(page1['next']) == {'q': [q], 'pagelen': ['1'], 'page': ['2']}
    page2 = bb.get(page1['next'], headers=alice).json()
    assert (page2['size'], page2['page'], page2['pagelen'], len(page2['values'])) == (2, 2, 1, 1)
    assert 'next' not in page2
    assert query_of(page2['previous']) == {'q': [q], 'pagelen': ['1'], 'page': ['1']}
    assert {page1['values'][0]['slug'], page2['values'][0]['slug']} == {'api', 'web'}


def test_next_echoes_query_sort_and_pagelen(bb, alice):
    params = {'q': 'slug ~ "svc-"', 'sort': '-slug', 'pagelen': 7}
    response = bb.get('/repositories/acme', headers=alice, params=params)
    assert response.status_code == 200
    page = response.json()
    assert query_of(page['next']) == {'q': ['slug ~ "svc-"'], 'sort': ['-slug'], 'pagelen': ['7'], 'page': ['2']}
    pages, values = bb.list_all('/repositories/acme', headers=alice, params=params)
    assert len(pages) == 36
    slugs = [repo['slug'] for repo in values]
    assert len(slugs) == 250
    assert slugs == sorted(slugs, reverse=True)


def test_explicit_page_parameter(bb, alice):
    everything = bb.acme_slugs(alice, sort='slug')
    page3 = bb.get('/repositories/acme', headers=alice, params={'sort': 'slug', 'pagelen': 20, 'page': 3}).json()
    assert page3['page'] == 3
    assert [repo['slug'] for repo in page3['values']] == everything[40:60]
    assert query_of(page3['previous'])['page'] == ['2']
    assert query_of(page3['next'])['page'] == ['4']


@pytest.mark.parametrize('pagelen', [0, 101, 1000, -1])
def test_pagelen_out_of_range_is_400(bb, alice, pagelen):
    response = bb.get('/repositories/acme', headers=alice, params={'pagelen': pagelen})
    assert response.status_code == 400
    assert response.json()['type'] == 'error'


@pytest.mark.parametrize('page', ['2/', 'two', '0', '-1'])
def test_bad_page_is_400_invalid_page(bb, alice, page):
    # atlassian-python-api#801: "?page=2/" got a 400 with a 55-byte body, Bitbucket's bare "Invalid page".
    response = bb.get('/repositories/acme', headers=alice, params={'page': page})
    assert response.status_code == 400
    assert response.content == b'{"type": "error", "error": {"message": "Invalid page"}}'


@pytest.mark.parametrize('pagelen', [1, 100])
def test_pagelen_bounds_accepted(bb, alice, pagelen):
    response = bb.get('/repositories/acme', headers=alice, params={'pagelen': pagelen})
    assert response.status_code == 200
    page = response.json()
    assert page['pagelen'] == pagelen
    assert len(page['values']) == pagelen


# ---------------------------------------------------------------- BBQL

NAMED = {'api', 'web', 'docs', 'infra'}


def proj(repo):
    return repo['project']['key']


# (q, the same condition in Python, the expected result among the four hand-written repositories)
BBQL_CASES = [
    ('slug = "api"', lambda r: r['slug'] == 'api', {'api'}),
    ('slug = "nothing-like-this"', lambda r: False, set()),
    ('project.key = "PROJ"', lambda r: proj(r) == 'PROJ', {'api', 'web'}),
    ('project.key = "DOC" OR project.key = "OPS"', lambda r: proj(r) in ('DOC', 'OPS'), {'docs', 'infra'}),
    ('is_private = false', lambda r: not r['is_private'], {'docs'}),
    ('is_private = true', lambda r: r['is_private'], {'api', 'web', 'infra'}),
    ('language = "python"', lambda r: r['language'] == 'python', {'api'}),
    ('language = "javascript" AND is_private = true', lambda r: r['language'] == 'javascript' and r['is_private'], {'web'}),
    ('(project.key = "PROJ" OR project.key = "OPS") AND is_private = true',
     lambda r: proj(r) in ('PROJ', 'OPS') and r['is_private'], {'api', 'web', 'infra'}),
    ('project.key = "PROJ" OR (project.key = "OPS" AND language = "python")',
     lambda r: proj(r) == 'PROJ' or (proj(r) == 'OPS' and r['language'] == 'python'), {'api', 'web'}),
    ('(project.key = "PROJ" OR project.key = "OPS") AND language = "shell"',
     lambda r: proj(r) in ('PROJ', 'OPS') and r['language'] == 'shell', {'infra'}),
    ('project.key = "PROJ" OR project.key = "OPS" AND language = "shell"',
     lambda r: proj(r) == 'PROJ' or (proj(r) == 'OPS' and r['language'] == 'shell'), {'api', 'web', 'infra'}),
    ('slug !~ "svc-"', lambda r: 'svc-' not in r['slug'], NAMED),
    ('slug ~ "svc-" AND slug = "api"', lambda r: False, set()),
    ('slug ~ "INF"', lambda r: 'inf' in r['slug'].lower(), {'infra'}),
    ('language != "python" AND is_private = true', lambda r: r['language'] != 'python' and r['is_private'], {'web', 'infra'}),
    ('project.key = "GEN" AND is_private = false', lambda r: proj(r) == 'GEN' and not r['is_private'], set()),
    # IN and NOT IN with list literals (the 2026 filtering narrative).
    ('project.key IN ("DOC", "OPS")', lambda r: proj(r) in ('DOC', 'OPS'), {'docs', 'infra'}),
    ('slug in ("api")', lambda r: r['slug'] == 'api', {'api'}),
    ('project.key NOT IN ("GEN", "PROJ")', lambda r: proj(r) not in ('GEN', 'PROJ'), {'docs', 'infra'}),
    ('language IN ("python", "shell") AND is_private = true',
     lambda r: r['language'] in ('python', 'shell') and r['is_private'], {'api', 'infra'}),
    ('slug = "web" OR project.key not in ("GEN","PROJ","OPS")', lambda r: r['slug'] == 'web' or proj(r) == 'DOC', {'web', 'docs'}),
]


@pytest.mark.parametrize('q,predicate,named', BBQL_CASES, ids=[case[0] for case in BBQL_CASES])
def test_bbql_filters(bb, alice, acme_repos, q, predicate, named):
    slugs = bb.acme_slugs(alice, q=q)
    assert len(slugs) == len(set(slugs))
    assert set(slugs) == {repo['slug'] for repo in acme_repos if predicate(repo)}
    assert set(slugs) & NAMED == named


def test_data_makes_the_filters_meaningful(acme_repos):
    """The generated repositories mix languages and visibility, so the filters above are not trivial."""
    generated = [repo for repo in acme_repos if repo['project']['key'] == 'GEN']
    assert len(generated) == 250
    assert len({repo['language'] for repo in generated}) > 2
    assert 0 < len([repo for repo in generated if repo['is_private']]) < 250


def test_bbql_counts(bb, alice, acme_repos):
    assert len(bb.acme_slugs(alice, q='slug ~ "svc-"')) == 250
    assert len(bb.acme_slugs(alice, q='slug != "api"')) == 253
    assert len(bb.acme_slugs(alice, q='is_private = true')) == len([r for r in acme_repos if r['is_private']])
    generated = len([r for r in acme_repos if r['project']['key'] == 'GEN'])
    assert generated == 250
    assert len(bb.acme_slugs(alice, q='project.key != "GEN"')) == 4


def test_bbql_name_operators(bb, alice, acme_repos):
    names = {repo['slug']: repo['name'] for repo in acme_repos}
    api_name = names['api']
    assert set(bb.acme_slugs(alice, q='name = "%s"' % api_name)) == {slug for slug, name in names.items() if name == api_name}
    assert len(bb.acme_slugs(alice, q='name != "%s"' % api_name)) == len([n for n in names.values() if n != api_name])
    needle = api_name.upper()
    assert set(bb.acme_slugs(alice, q='name ~ "%s"' % needle)) == {slug for slug, name in names.items() if needle.lower() in name.lower()}
    assert set(bb.acme_slugs(alice, q='name !~ "%s"' % needle)) == {slug for slug, name in names.items() if needle.lower() not in name.lower()}


def test_bbql_updated_on(bb, alice, acme_repos):
    times = sorted({parse_time(repo['updated_on']) for repo in acme_repos})
    assert times, 'repositories need updated_on'
    pivot = times[len(times) // 2]
    literal = pivot.isoformat()
    later = {repo['slug'] for repo in acme_repos if parse_time(repo['updated_on']) > pivot}
    earlier = {repo['slug'] for repo in acme_repos if parse_time(repo['updated_on']) < pivot}
    assert set(bb.acme_slugs(alice, q='updated_on > %s' % literal)) == later
    assert set(bb.acme_slugs(alice, q='updated_on < %s' % literal)) == earlier
    assert bb.acme_slugs(alice, q='updated_on > 2999-01-01T00:00:00') == []
    assert len(bb.acme_slugs(alice, q='updated_on > 1990-01-01T00:00:00')) == 254


@pytest.mark.parametrize('q', [
    'slug = ', 'slug = "api" AND', '(slug = "api"', 'nosuchfield = "x"', 'slug == "api"',
    # impossible dates are the client's mistake (400), not a server error
    'updated_on > 2015-02-30', 'updated_on < 2015-13-01T25:00', 'created_on IN (2015-02-30)',
    'slug IN ()', 'slug IN "api"', 'slug IN ("api",)', 'slug NOT = "api"', 'slug IN ("api" "web")', 'slug IN (1, 2)',
])
def test_bbql_invalid_is_400(bb, alice, q):
    response = bb.get('/repositories/acme', headers=alice, params={'q': q})
    assert response.status_code == 400
    assert response.json()['type'] == 'error'


def test_bbql_in_on_datetimes_and_refs(bb, alice, acme_repos):
    api = next(repo for repo in acme_repos if repo['slug'] == 'api')
    assert bb.acme_slugs(alice, q='updated_on IN (%s, 1999-01-01)' % api['updated_on']) == ['api']
    response = bb.get('/repositories/acme/web/refs/tags', headers=alice, params={'q': 'name NOT IN ("v2.3.0")'})
    assert response.status_code == 200, response.text
    assert [tag['name'] for tag in response.json()['values']] == ['v2.4.0']


def test_bbql_respects_visibility(bb, acme_repos):
    public = {repo['slug'] for repo in acme_repos if not repo['is_private']}
    assert bb.acme_slugs(None, q='project.key = "PROJ"') == []
    assert set(bb.acme_slugs(None, q='is_private = false')) == public
    assert set(bb.acme_slugs(None, q='is_private = true')) == set()
    assert set(bb.acme_slugs(None)) == public


# ---------------------------------------------------------------- sort

@pytest.mark.parametrize('field', ['slug', 'name'])
def test_sort_ascending_and_descending(bb, alice, acme_repos, field):
    by_slug = {repo['slug']: repo[field] for repo in acme_repos}
    up = bb.acme_slugs(alice, sort=field)
    down = bb.acme_slugs(alice, sort='-' + field)
    assert len(up) == len(down) == 254
    assert [by_slug[s] for s in up] == sorted(by_slug.values())
    assert [by_slug[s] for s in down] == sorted(by_slug.values(), reverse=True)


def test_sort_by_updated_on(bb, alice):
    pages, values = bb.list_all('/repositories/acme', headers=alice, params={'sort': '-updated_on', 'pagelen': 100})
    assert len(pages) == 3
    times = [parse_time(repo['updated_on']) for repo in values]
    assert len(times) == 254
    assert times == sorted(times, reverse=True)
    values = bb.list_all('/repositories/acme', headers=alice, params={'sort': 'updated_on', 'pagelen': 100})[1]
    times = [parse_time(repo['updated_on']) for repo in values]
    assert times == sorted(times)


def test_sort_with_filter(bb, alice):
    assert bb.acme_slugs(alice, q='slug !~ "svc-"', sort='-slug') == ['web', 'infra', 'docs', 'api']
    assert bb.acme_slugs(alice, q='slug !~ "svc-"', sort='slug') == ['api', 'docs', 'infra', 'web']


# ---------------------------------------------------------------- role

def test_role_member(bb, alice, acme_repos):
    assert len(bb.acme_slugs(alice, role='member')) == 254
    bob = bb.basic(bb.BOB, bb.BOB_APP_PASSWORD)
    assert set(bb.acme_slugs(bob)) == {repo['slug'] for repo in acme_repos if not repo['is_private']}
    assert bb.acme_slugs(bob, role='member') == []
    assert bb.list_all('/repositories/bobspace', headers=bob, params={'role': 'member'})[1][0]['slug'] == 'notes'


# ---------------------------------------------------------------- fields

def test_fields_whitelist_on_listing(bb, alice):
    response = bb.get('/repositories/acme', headers=alice, params={'fields': 'values.slug,next', 'pagelen': 50})
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {'values', 'next'}
    assert all(set(value) == {'slug'} for value in page['values'])
    assert len(page['values']) == 50
    assert query_of(page['next'])['fields'] == ['values.slug,next']
    pages, values = bb.list_all('/repositories/acme', headers=alice, params={'fields': 'values.slug,next', 'pagelen': 50})
    assert len(pages) == 6
    assert all(set(value) == {'slug'} for value in values)
    assert len({value['slug'] for value in values}) == 254
    assert set(pages[-1]) == {'values'}


def test_fields_exclusion(bb, alice):
    full = bb.get('/repositories/acme/api', headers=alice).json()
    assert 'links' in full
    trimmed = bb.get('/repositories/acme/api', headers=alice, params={'fields': '-links'}).json()
    assert 'links' not in trimmed
    assert trimmed == {key: value for key, value in full.items() if key != 'links'}
    listing = bb.get('/repositories/acme', headers=alice, params={'fields': '-values.links'}).json()
    assert listing['size'] == 254
    assert all('links' not in value and 'slug' in value for value in listing['values'])


def test_fields_unencoded_plus_matches_nothing(bb, alice):
    # partial-response docs: without %2B the "+" is an encoded space, "which will not match any fields".
    url = bb.api_url + '/repositories/acme/api?fields='
    encoded = bb.get(url + '%2Bproject.key,-links', headers=alice)
    assert encoded.status_code == 200
    assert encoded.json()['project']['key'] == 'PROJ' and 'links' not in encoded.json() and 'slug' in encoded.json()
    raw = bb.get(url + '+project.key', headers=alice)
    assert raw.status_code == 200
    assert raw.json() == {}
    assert bb.get(url + 'slug,+project.key', headers=alice).json() == {'slug': 'api'}


def test_fields_dotted_whitelist_on_object(bb, alice):
    response = bb.get('/repositories/acme/api', headers=alice, params={'fields': 'full_name,project.key,mainbranch.name'})
    assert response.status_code == 200
    assert response.json() == {'full_name': 'acme/api', 'project': {'key': 'PROJ'}, 'mainbranch': {'name': 'main'}}


# ---------------------------------------------------------------- one repository

@pytest.mark.parametrize('slug', ['api', 'web', 'docs', 'infra'])
def test_repository_object(bb, slug):
    project, private, language, branches = bb.ACME_REPOS[slug][:4]
    response = bb.get('/repositories/acme/' + slug, auth=(bb.ALICE, bb.ALICE_APP_PASSWORD))
    assert response.status_code == 200
    repo = response.json()
    assert repo['type'] == 'repository'
    assert repo['full_name'] == 'acme/' + slug
    assert repo['slug'] == slug
    assert UUID.match(repo['uuid'])
    assert repo['is_private'] is private
    assert repo['language'] == language
    assert repo['scm'] == 'git'
    assert repo['mainbranch']['name'] == branches[0]
    assert repo['mainbranch']['type'] == 'branch'
    assert repo['project']['key'] == project
    assert repo['workspace']['slug'] == 'acme'
    clone = {link['name']: link['href'] for link in repo['links']['clone']}
    assert set(clone) == {'https', 'ssh'}
    assert clone['https'] == bb.clone_url('acme', slug, user='alice')
    assert clone['ssh'].endswith('acme/%s.git' % slug)
    assert clone['ssh'].startswith(('git@', 'ssh://git@'))


def test_repository_uuids_are_distinct(acme_repos):
    uuids = [repo['uuid'] for repo in acme_repos]
    assert len(set(uuids)) == 254
    assert all(UUID.match(uuid) for uuid in uuids)


def test_clone_link_for_anonymous_has_no_userinfo(bb):
    repo = bb.get('/repositories/acme/docs').json()
    clone = {link['name']: link['href'] for link in repo['links']['clone']}
    assert clone['https'] == bb.clone_url('acme', 'docs')


def test_clone_link_uses_the_callers_username(bb):
    repo = bb.get('/repositories/acme/docs', auth=(bb.BOB, bb.BOB_APP_PASSWORD)).json()
    clone = {link['name']: link['href'] for link in repo['links']['clone']}
    assert clone['https'] == bb.clone_url('acme', 'docs', user='bob')


def test_clone_link_with_workspace_token_names_its_bot(bb):
    repo = bb.get('/repositories/acme/api', headers=bb.bearer(bb.ACME_WAT)).json()
    https = urllib.parse.urlsplit({link['name']: link['href'] for link in repo['links']['clone']}['https'])
    assert https.username
    assert https.username not in ('alice', 'x-token-auth')
    assert https.password is None
    assert bb.ACME_WAT not in repo['links']['clone'][0]['href']
    assert https.path.endswith('/acme/api.git')


def test_listing_values_are_repository_objects(acme_repos):
    api = [repo for repo in acme_repos if repo['slug'] == 'api'][0]
    assert api['full_name'] == 'acme/api'
    assert api['mainbranch']['name'] == 'main'
    assert api['project']['key'] == 'PROJ'


def test_unknown_workspace_is_404(bb, alice):
    response = bb.get('/repositories/no-such-workspace', headers=alice)
    assert response.status_code == 404
    assert response.json()['type'] == 'error'


def test_bobspace_listing(bb):
    bob = bb.basic(bb.BOB, bb.BOB_APP_PASSWORD)
    assert bb.list_all('/repositories/bobspace', headers=bob)[1][0]['full_name'] == 'bobspace/notes'
    page = bb.get('/repositories/bobspace', headers=bb.bearer(bb.alice_token())).json()
    assert page['values'] == []
    assert page['size'] == 0
    assert 'next' not in page


# ---------------------------------------------------------------- refs

def ls_remote_heads_and_tags(bb, slug):
    refs = bb.ls_remote(bb.clone_url('acme', slug, bb.ALICE, bb.ALICE_APP_PASSWORD))
    heads = {ref[len('refs/heads/'):]: sha for ref, sha in refs.items() if ref.startswith('refs/heads/')}
    tags = {}
    for ref, sha in refs.items():
        if ref.startswith('refs/tags/') and not ref.endswith('^{}'):
            tags[ref[len('refs/tags/'):]] = refs.get(ref + '^{}', sha)
    return heads, tags


@pytest.mark.parametrize('slug', ['api', 'web', 'docs', 'infra'])
def test_branches_and_tags_match_git(bb, alice, slug):
    branches, tags = bb.ACME_REPOS[slug][3:]
    heads, git_tags = ls_remote_heads_and_tags(bb, slug)
    assert set(heads) == set(branches)
    assert set(git_tags) == set(tags)

    pages, values = bb.list_all('/repositories/acme/%s/refs/branches' % slug, headers=alice)
    assert pages[0]['size'] == len(branches)
    assert {branch['name']: branch['target']['hash'] for branch in values} == heads
    assert all(branch['type'] == 'branch' and branch['target']['type'] == 'commit' for branch in values)

    pages, values = bb.list_all('/repositories/acme/%s/refs/tags' % slug, headers=alice)
    assert pages[0]['size'] == len(tags)
    assert {tag['name']: tag['target']['hash'] for tag in values} == git_tags
    assert all(tag['type'] == 'tag' for tag in values)


def test_branch_with_slash(bb, alice):
    heads = ls_remote_heads_and_tags(bb, 'api')[0]
    response = bb.get('/repositories/acme/api/refs/branches/release%2F1.x', headers=alice)
    assert response.status_code == 200
    branch = response.json()
    assert branch['name'] == 'release/1.x'
    assert branch['type'] == 'branch'
    assert branch['target']['hash'] == heads['release/1.x']
    main = bb.get('/repositories/acme/api/refs/branches/main', headers=alice).json()
    assert main['target']['hash'] == heads['main']
    assert main['target']['hash'] != branch['target']['hash']


def test_unknown_branch_is_404(bb, alice):
    response = bb.get('/repositories/acme/api/refs/branches/no-such-branch', headers=alice)
    assert response.status_code == 404
    assert response.json()['type'] == 'error'


def test_refs_of_invisible_repository_are_404(bb):
    response = bb.get('/repositories/acme/api/refs/branches', auth=(bb.BOB, bb.BOB_APP_PASSWORD))
    assert response.status_code == 404
    assert bb.error_message(response) == bb.REPO_NOT_FOUND
    assert bb.get('/repositories/acme/api/refs/tags').status_code == 404


def test_generated_repository_refs(bb, alice, acme_repos):
    slug = sorted(repo['slug'] for repo in acme_repos if repo['slug'].startswith(bb.GENERATED_PREFIX))[-1]
    repo = bb.get('/repositories/acme/' + slug, headers=alice).json()
    heads = {ref[len('refs/heads/'):]: sha
             for ref, sha in bb.ls_remote(bb.clone_url('acme', slug, bb.ALICE, bb.ALICE_APP_PASSWORD)).items()
             if ref.startswith('refs/heads/')}
    values = bb.list_all('/repositories/acme/%s/refs/branches' % slug, headers=alice)[1]
    assert {branch['name']: branch['target']['hash'] for branch in values} == heads
    assert repo['mainbranch']['name'] in heads


# ---------------------------------------------------------------- user and workspaces

def test_user(bb, alice):
    response = bb.get('/user', headers=alice)
    assert response.status_code == 200
    user = response.json()
    assert user['type'] == 'user'
    assert user['username'] == 'alice'
    assert user['display_name'] == 'Alice Example'
    assert UUID.match(user['uuid'])
    assert user['account_id']


def test_user_workspaces(bb, alice):
    values = bb.list_all('/user/workspaces', headers=alice)[1]
    assert [value['workspace']['slug'] for value in values] == ['acme']
    assert values[0]['type'] == 'workspace_access'
    values = bb.list_all('/user/workspaces', headers=bb.basic(bb.BOB, bb.BOB_APP_PASSWORD))[1]
    assert [value['workspace']['slug'] for value in values] == ['bobspace']
    assert bb.get('/user/workspaces').status_code == 401
