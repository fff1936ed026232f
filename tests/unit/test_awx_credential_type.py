# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The AWX/AAP credential type in extensions/awx/: what the AWX API accepts, and what its injected
environment makes the modules, the lookup and the role choose. No network, no AWX.
"""

from __future__ import annotations

import re

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import (
    DEFAULT_API_URL,
    ENV_VARS,
    URL_ENV_VARS,
    api_argument_spec,
    build_auth,
    resolve_credentials,
)
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import ValidationError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._oauth import DEFAULT_TOKEN_URL

from awx_credential import injected_env, load_credential_type

CLIENT_ID = 'demoKey1234567890ab'
CLIENT_SECRET = 'demoSecret+With/Odd=Chars0123456789'
ACCESS_TOKEN = 'ATCTT3xFfGN0acme+workspace/token='
DC_API = 'https://bitbucket.example.com/ctx/rest/api/1.0'
DC_TOKEN = 'https://bitbucket.example.com/ctx/rest/oauth2/latest/token'
EMULATOR_API = 'https://127.0.0.1:8443/2.0'
EMULATOR_TOKEN = 'https://127.0.0.1:8443/site/oauth2/access_token'

# What AWX's CredentialTypeInputField schema allows in a field (additionalProperties: false).
FIELD_KEYS = {'id', 'label', 'type', 'help_text', 'secret', 'multiline', 'format', 'choices', 'ask_at_runtime', 'default'}
NAME_RE = re.compile(r'^[a-zA-Z_]+[a-zA-Z0-9_]*$')  # field ids and env variable names, as AWX checks them

CREDENTIAL_TYPE = load_credential_type()
FIELDS = CREDENTIAL_TYPE['inputs']['fields']
ENV_INJECTORS = CREDENTIAL_TYPE['injectors']['env']


# --- the credential type as the AWX API validates it ---------------------------------------


def test_top_level_is_a_credential_types_post_body():
    assert set(CREDENTIAL_TYPE) == {'name', 'description', 'kind', 'inputs', 'injectors'}
    assert CREDENTIAL_TYPE['name'] == 'Bitbucket OAuth consumer'
    # Custom types may only be cloud or net; cloud is the one a job template takes beside its machine credential.
    assert CREDENTIAL_TYPE['kind'] == 'cloud'
    assert set(CREDENTIAL_TYPE['inputs']) <= {'fields', 'required'}
    assert set(CREDENTIAL_TYPE['injectors']) == {'env'}


@pytest.mark.parametrize('field', FIELDS, ids=[field.get('id') for field in FIELDS])
def test_every_field_is_valid_for_awx(field):
    assert {'id', 'label', 'type'} <= set(field) <= FIELD_KEYS
    assert NAME_RE.match(field['id']) and field['id'] != 'tower'  # "tower" is AWX's reserved namespace
    assert field['type'] in ('string', 'boolean')
    assert isinstance(field['label'], str) and field['label']
    assert isinstance(field.get('help_text', ''), str)
    if field['type'] != 'string':
        assert not set(field) & {'secret', 'multiline', 'format', 'choices'}
    # A blank URL must reach the collection blank (token_url is then derived from api_url): no prefilled defaults.
    assert 'default' not in field


def test_field_ids_and_labels_are_unique_and_the_secrets_are_the_secret_ones():
    ids = [field['id'] for field in FIELDS]
    labels = [field['label'] for field in FIELDS]
    assert len(set(ids)) == len(ids) and len(set(labels)) == len(labels)
    assert set(ids) == {'client_id', 'client_secret', 'token_url', 'api_url', 'access_token'}
    assert {field['id'] for field in FIELDS if field.get('secret')} == {'client_secret', 'access_token'}


def test_required_names_existing_fields_and_is_empty():
    required = CREDENTIAL_TYPE['inputs'].get('required', [])
    assert set(required) <= {field['id'] for field in FIELDS}
    # Either an access token or a consumer key + secret authenticates; AWX cannot say "one of" for
    # custom types (no 'dependencies'), so nothing is required and the help texts say what to fill in.
    assert required == []


def test_injectors_pass_awx_validation():
    # As AWX checks an injector when the type is saved: names, no ANSIBLE_*, ASCII, only defined fields.
    namespace = {field['id']: 'EXAMPLE' for field in FIELDS}
    strict = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for name, template in ENV_INJECTORS.items():
        assert NAME_RE.match(name) and not name.startswith('ANSIBLE_'), name
        assert template.isascii()
        assert strict.from_string(template).render(namespace) == 'EXAMPLE'


def test_each_field_is_injected_as_the_variable_the_collection_reads_for_that_option():
    # Field ids are the collection's option names; their variables are those _auth reads for them.
    read_by_the_collection = dict(ENV_VARS, **URL_ENV_VARS)
    expected = {read_by_the_collection[field['id']]: field['id'] for field in FIELDS}
    marked = {field['id']: 'value-of-' + field['id'] for field in FIELDS}
    env = injected_env(marked)
    assert {name: value[len('value-of-'):] for name, value in env.items()} == expected
    assert set(env) == {ENV_VARS[option] for option in ('client_id', 'client_secret', 'access_token')} | set(URL_ENV_VARS.values())


def test_injected_env_renders_blank_and_missing_fields_as_empty_and_refuses_unknown_ones():
    env = injected_env({'client_id': CLIENT_ID, 'client_secret': CLIENT_SECRET, 'api_url': ''})
    assert env == {'BITBUCKET_CLIENT_ID': CLIENT_ID, 'BITBUCKET_CLIENT_SECRET': CLIENT_SECRET, 'BITBUCKET_API_URL': '',
                   'BITBUCKET_TOKEN_URL': '', 'BITBUCKET_ACCESS_TOKEN': ''}
    with pytest.raises(ValueError, match='clientid'):
        injected_env({'clientid': CLIENT_ID})


# --- what the injected environment makes the collection do ----------------------------------


def module_params(env, monkeypatch, **params):
    """An API module's parameters, validated by Ansible in a job environment of exactly `env`."""
    for name in set(ENV_VARS.values()) | set(URL_ENV_VARS.values()):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = ArgumentSpecValidator(api_argument_spec()).validate(dict(params, workspace='acme', cache=False))
    assert result.error_messages == []
    return result.validated_parameters


@pytest.mark.parametrize('urls, api_url, token_url', [
    ({}, DEFAULT_API_URL, DEFAULT_TOKEN_URL),
    ({'api_url': EMULATOR_API, 'token_url': EMULATOR_TOKEN}, EMULATOR_API, EMULATOR_TOKEN),
], ids=['cloud', 'urls set'])
def test_consumer_key_and_secret_only_select_client_credentials(urls, api_url, token_url, monkeypatch):
    env = injected_env(dict({'client_id': CLIENT_ID, 'client_secret': CLIENT_SECRET}, **urls))
    params = module_params(env, monkeypatch)
    name, values, from_env = resolve_credentials(params, env)
    assert name == 'client_credentials' and values == {'client_id': CLIENT_ID, 'client_secret': CLIENT_SECRET}
    assert sorted(from_env) == ['BITBUCKET_CLIENT_ID', 'BITBUCKET_CLIENT_SECRET']
    auth, dummy = build_auth(params, http=None, environ=env)
    assert params['api_url'] == api_url and auth.endpoint.token_url == token_url


@pytest.mark.parametrize('api_url', [None, DC_API], ids=['cloud', 'datacenter'])
def test_access_token_only_selects_the_access_token(api_url, monkeypatch):
    env = injected_env({'access_token': ACCESS_TOKEN, 'api_url': api_url})
    params = module_params(env, monkeypatch)
    assert resolve_credentials(params, env)[:2] == ('access_token', {'access_token': ACCESS_TOKEN})
    assert build_auth(params, http=None, environ=env)[0].headers() == {'Authorization': 'Bearer ' + ACCESS_TOKEN}
    assert params['api_url'] == (api_url or DEFAULT_API_URL) and params['token_url'] is None


def test_an_access_token_beside_the_consumer_wins_as_the_help_text_says(monkeypatch):
    env = injected_env({'client_id': CLIENT_ID, 'client_secret': CLIENT_SECRET, 'access_token': ACCESS_TOKEN})
    assert resolve_credentials(module_params(env, monkeypatch), env)[0] == 'access_token'
    assert 'rather than the consumer' in {field['id']: field for field in FIELDS}['access_token']['help_text']


def test_datacenter_token_url_is_derived_from_a_blank_token_url(monkeypatch):
    # The authorize playbook and oauth_token's refresh_token grant use the consumer on Data Center.
    env = injected_env({'client_id': CLIENT_ID, 'client_secret': CLIENT_SECRET, 'api_url': DC_API})
    params = module_params(env, monkeypatch)
    assert params['api_url'] == DC_API and params['token_url'] is None
    with pytest.raises(ValidationError, match='Data Center'):
        build_auth(params, http=None, environ=env)  # no client_credentials grant there: refused before any request
    params = module_params(injected_env({'client_id': CLIENT_ID, 'client_secret': CLIENT_SECRET, 'api_url': DC_API,
                                         'token_url': DC_TOKEN}), monkeypatch)
    assert params['token_url'] == DC_TOKEN


def test_a_blank_credential_authenticates_nothing(monkeypatch):
    env = injected_env({})
    with pytest.raises(ValidationError, match='no credentials'):
        resolve_credentials(module_params(env, monkeypatch), env)
