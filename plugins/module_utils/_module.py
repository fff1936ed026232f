# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Module front end: the one place where BitbucketError becomes fail_json."""

from __future__ import annotations

import os
import traceback

from ansible_collections.codeferry.bitbucket.plugins.module_utils._api import BitbucketClient
from ansible_collections.codeferry.bitbucket.plugins.module_utils._auth import ENV_VARS, SECRET_OPTIONS, build_auth
from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import AuthenticationError, BitbucketError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import ModuleHttp, url_secrets

URL_OPTIONS = ('api_url', 'token_url', 'redirect_uri')


def module_http(module):
    """The module's HttpHelper; its warnings (insecure settings) are shown at once."""
    params = module.params
    http = ModuleHttp(module, validate_certs=params.get('validate_certs', True), ca_path=params.get('ca_path'),
                      timeout=params.get('timeout'))
    for warning in http.warnings:
        module.warn(warning)
    return http


def hide_env_secrets(module, names):
    """Secrets read from the environment are masked in output like no_log options are."""
    secret_vars = set(ENV_VARS[option] for option in SECRET_OPTIONS if option in ENV_VARS)
    for name in names:
        if name in secret_vars and os.environ.get(name):
            module.no_log_values.add(os.environ[name])


class ModuleRunner(object):
    """Runs a module body and turns every BitbucketError into fail_json, with warnings emitted."""

    def __init__(self, module):
        self.module = module
        self.auth = None
        # URLs are refused when they hold credentials, but Ansible echoes the arguments: mask those there too.
        module.no_log_values.update(url_secrets({'url': module.params.get(name)} for name in URL_OPTIONS))

    def client(self):
        """A BitbucketClient for the API options of the module."""
        http = module_http(self.module)
        self.auth, from_env = build_auth(self.module.params, http)
        hide_env_secrets(self.module, from_env)
        return BitbucketClient(http, self.module.params['api_url'], self.auth)

    def warn_all(self, warnings):
        for warning in warnings:
            self.module.warn(warning)

    def _auth_cleanup(self):
        if self.auth is None:
            return
        self.warn_all(self.auth.warnings)
        self.auth.warnings = []
        # A token minted for this task is as secret as the options: mask it in any output.
        for value in self.auth.secrets():
            if value:
                self.module.no_log_values.add(value)

    def run(self, body):
        """body(runner) returns the result dict for exit_json."""
        try:
            result = body(self)
        except BitbucketError as exc:
            message = str(exc)
            if isinstance(exc, AuthenticationError) and exc.status == 401 and self.auth is not None:
                message += self.auth.rejected()
            self._auth_cleanup()
            self.module.fail_json(msg=message, **exc.result_fields())
        except Exception as exc:  # pylint: disable=broad-except
            # A bug or an input nobody foresaw: still one message, with the traceback only at -vvv.
            # fail_json masks the secrets this task knows in both.
            self._auth_cleanup()
            self.module.fail_json(msg='unexpected error (please report it): %s: %s' % (type(exc).__name__, exc),
                                  exception=traceback.format_exc())
        self._auth_cleanup()
        self.module.exit_json(**result)
