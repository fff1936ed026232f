"""The "Bitbucket OAuth consumer" AWX/AAP credential type (extensions/awx/), rendered as AWX renders it.

injected_env(inputs) gives the environment variables a job gets from a credential of that type:
what ansible-runner tests write to env/envvars, and what the unit tests feed to _auth.
"""

import json
import os

from jinja2.sandbox import ImmutableSandboxedEnvironment

CREDENTIAL_TYPE_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    'extensions', 'awx', 'bitbucket_oauth_consumer.json')


def load_credential_type(path=CREDENTIAL_TYPE_FILE):
    """The credential type as the body of POST /api/v2/credential_types/."""
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def injected_env(inputs, credential_type=None):
    """{variable: value} for a credential of the type with `inputs` ({field id: value}).

    As AWX's CredentialType.inject_credential(): a field left out or empty is undefined in the
    templates, which a default-Undefined sandbox renders as "", and every env injector is set,
    so a blank field still injects its variable, empty.
    """
    credential_type = credential_type or load_credential_type()
    fields = {field['id']: field for field in credential_type['inputs']['fields']}
    unknown = sorted(set(inputs) - set(fields))
    if unknown:
        # A misspelt input would silently inject nothing; AWX refuses it when the credential is saved.
        raise ValueError('not fields of credential type %r: %s' % (credential_type['name'], ', '.join(unknown)))
    namespace = {}
    for field_id, value in inputs.items():
        if isinstance(value, bool) or (value is not None and len(value)):
            namespace[field_id] = value
    for field_id, field in fields.items():
        if field.get('type') == 'boolean' and field_id not in namespace:
            namespace[field_id] = False
    sandbox = ImmutableSandboxedEnvironment()
    return {name: sandbox.from_string(template).render(**namespace)
            for name, template in credential_type['injectors'].get('env', {}).items()}
