# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of git_checkout: transport=direct runs the module as it is; transport=controller
fetches into mirrors on the controller and sends each host a bundle over the Ansible connection."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.codeferry.bitbucket.plugins.module_utils._errors import BitbucketError
from ansible_collections.codeferry.bitbucket.plugins.module_utils._git import ARGUMENT_RULES, ARGUMENT_SPEC
from ansible_collections.codeferry.bitbucket.plugins.module_utils._http import redact, url_secrets
from ansible_collections.codeferry.bitbucket.plugins.plugin_utils._mirror import ControllerCheckout

MODULE = 'codeferry.bitbucket.git_checkout'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False  # only transport=controller copies files, and only to hosts that lack objects

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        if self._task.args.get('transport', 'direct') != 'controller':
            result.update(self._execute_module(module_name=MODULE, task_vars=task_vars))
            return result
        args = self._task.args
        secrets = set(url_secrets(args.get('repositories') if isinstance(args.get('repositories'), list) else []))
        secrets.update(value for value in (args.get('access_token'), args.get('password')) if isinstance(value, str) and value)
        try:
            dummy, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, **ARGUMENT_RULES)

            def execute(module_args):
                return self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)

            checkout = ControllerCheckout(params, execute, self._send,
                                          credential_mode_given=args.get('credential_mode') is not None)
            result.update(checkout.run())
        except AnsibleActionFail as exc:
            result.update(failed=True, msg=redact(str(exc.message), sorted(secrets)))
        except BitbucketError as exc:
            result.update(failed=True, msg=redact(str(exc), sorted(secrets)))
        except Exception as exc:  # pylint: disable=broad-except
            # A bug or an input nobody foresaw: still one message, and no secret in it.
            result.update(failed=True, msg=redact('unexpected error (please report it): %s: %s' % (type(exc).__name__, exc),
                                                  sorted(secrets)))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if not self._task.diff:
            result.pop('diff', None)
        return result

    def _send(self, local_path, name):
        """Copy a file into the task's temporary directory on the host, readable by the user the module runs as."""
        shell = self._connection._shell
        if shell.tmpdir is None:
            self._make_tmp_path()
        remote_path = shell.join_path(shell.tmpdir, name)
        self._transfer_file(local_path, remote_path)
        self._fixup_perms2((shell.tmpdir, remote_path), execute=False)
        return remote_path
