# Copyright: native async for Ansible developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of native.async_jobs.async_status.

It does what ansible-core's own async_status action plugin does (validate
`jid` and `mode`, expand the async dir on the target, force `started` and
`finished` to booleans) but runs this collection's native module.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

MODULE = "native.async_jobs.async_status"


class ActionModule(ActionBase):

    def _get_async_dir(self):
        # The async dir is the shell plugin's `async_dir` option (ansible_async_dir).
        async_dir = self.get_shell_option("async_dir", default="~/.ansible_async")
        return self._remote_expand_user(async_dir)

    def run(self, tmp=None, task_vars=None):
        results = super(ActionModule, self).run(tmp, task_vars)

        _, new_module_args = self.validate_argument_spec(
            argument_spec={
                "jid": {"type": "str", "required": True},
                "mode": {"type": "str", "choices": ["status", "cleanup"], "default": "status"},
            },
        )

        results["started"] = results["finished"] = False
        results["stdout"] = results["stderr"] = ""
        results["stdout_lines"] = results["stderr_lines"] = []

        jid = new_module_args["jid"]
        results["ansible_job_id"] = jid
        async_dir = self._get_async_dir()
        log_path = self._connection._shell.join_path(async_dir, jid)

        if new_module_args["mode"] == "cleanup":
            results["erased"] = log_path
        else:
            results["results_file"] = log_path
            results["started"] = True

        new_module_args["_async_dir"] = async_dir
        results = merge_hash(
            results,
            self._execute_module(module_name=MODULE, task_vars=task_vars, module_args=new_module_args),
        )

        for key in ("started", "finished"):
            results[key] = bool(results[key])

        return results
