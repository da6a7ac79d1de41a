# Copyright: native async for Ansible developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of native.async_jobs.async_status.

For `status` and `cleanup` of one `jid` it answers as ansible-core's own
async_status action plugin does (the same keys, `started` and `finished` as
booleans). It adds `wait`, `jids`, `return_when`, and the modes `kill`, `list`
and `prune`, all carried out on the host by the native module.

Unlike the builtin it does not expand `~` in the async dir with an extra
`echo ~user` round trip: the module expands it on the host, as the user it
runs as (the become user when there is one), which is where the wrapper wrote.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

MODULE = "native.async_jobs.async_status"
# Installed mode: the text launcher in the collection's `installed/` folder,
# found through the library path as the builtin's name.
INSTALLED_MODULE = "ansible.legacy.async_status"

ARGUMENT_SPEC = {
    "jid": {"type": "str"},
    "jids": {"type": "list", "elements": "str"},
    "mode": {"type": "str", "choices": ["status", "cleanup", "kill", "list", "prune"], "default": "status"},
    "wait": {"type": "float"},
    "return_when": {"type": "str", "choices": ["all", "any"]},
    "signal": {"type": "str"},
    "older_than": {"type": "str"},
}


class ActionModule(ActionBase):

    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        results = super(ActionModule, self).run(tmp, task_vars)

        # (validation result, validated arguments): the arguments are what this plugin uses.
        args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC,
            mutually_exclusive=[("jid", "jids")],
        )[1]
        mode = args["mode"]
        module_args = {k: v for k, v in args.items() if v is not None}
        # The shell plugin's `async_dir` option (ansible_async_dir), unexpanded.
        module_args["_async_dir"] = self.get_shell_option("async_dir", default="~/.ansible_async")

        single = args.get("jid") is not None
        if single and mode in ("status", "cleanup"):
            # The builtin's result shape, so registered results read the same.
            results["started"] = results["finished"] = False
            results["stdout"] = results["stderr"] = ""
            results["stdout_lines"] = results["stderr_lines"] = []
            results["ansible_job_id"] = args["jid"]
            if mode == "status":
                results["started"] = True

        installed = boolean(task_vars.get("native_async_installed", False), strict=False)
        module = INSTALLED_MODULE if installed else MODULE
        if installed:
            self._check_installed_launcher()
        results = merge_hash(
            results,
            self._execute_module(module_name=module, task_vars=task_vars, module_args=module_args),
        )

        for key in ("started", "finished"):
            if key in results:
                results[key] = bool(results[key])
        for job in results.get("results") or []:
            if isinstance(job, dict):
                for key in ("started", "finished"):
                    if key in job:
                        job[key] = bool(job[key])
                for stream in ("stdout", "stderr"):
                    if isinstance(job.get(stream), str) and stream + "_lines" not in job:
                        job[stream + "_lines"] = job[stream].splitlines()
        return results

    def _check_installed_launcher(self):
        """Installed mode needs the library path on the collection's `installed/`
        folder; else `ansible.legacy.async_status` is the builtin Python module,
        which would refuse (or silently lack) this module's options."""
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(INSTALLED_MODULE)
        path = found.plugin_resolved_path if found.resolved else None
        head = b""
        if path:
            with open(path, "rb") as f:
                head = f.read(512)
        if b"native" not in head or not head.startswith(b"#!"):
            raise AnsibleActionFail(
                "native_async_installed is set, but async_status resolves to %s, not the installed-mode "
                "launcher; set the library path (ANSIBLE_LIBRARY or library =) to the collection's "
                "installed/ folder" % (path or "nothing"))
