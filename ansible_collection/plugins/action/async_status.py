# Copyright: native async for Ansible developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of native.async_jobs.async_status.

For `status` and `cleanup` of one `jid` it answers as ansible-core's own
async_status action plugin does (the same keys, `started` and `finished` as
booleans). It adds `wait`, `jids`, `return_when`, `output`, and the modes
`kill`, `list` and `prune`, all carried out on the host by the native module.

One round trip: when the host has a trusted cached (or installed) copy of the
native binary, the lookup is a single command over the connection that runs
it, its arguments on the command line: no tmp dir, no upload, no chmod, no
cleanup (plugin_utils/one_command.py, shared with the fast_async callback;
on a host's first lookup the binary goes with a second command). Only when
the host cannot have a copy is the module sent.

Put on the action plugin path (`action_plugins =` or ANSIBLE_ACTION_PLUGINS),
this file also serves `async_status` and `ansible.legacy.async_status`, which
playbooks and the executor's own polling for `poll > 0` use (never
`ansible.builtin.async_status`: ansible-core resolves that name only to its
own plugin, which the fast_async callback speeds up instead). It must not
import ansible's own async_status plugin: loaded from a path, it is imported
under that module's name.

Unlike the builtin it does not expand `~` in the async dir with an extra
`echo ~user` round trip: the module expands it on the host, as the user it
runs as (the become user when there is one), which is where the wrapper wrote.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

MODULE = "native.async_jobs.async_status"
# The builtin's names, when this file is on the action plugin path: the module
# is then whatever `async_status` resolves to (ours, with the library path set).
LEGACY_MODULE = "ansible.legacy.async_status"

ARGUMENT_SPEC = {
    "jid": {"type": "str"},
    "jids": {"type": "list", "elements": "str"},
    "mode": {"type": "str", "choices": ["status", "cleanup", "kill", "list", "prune"], "default": "status"},
    "wait": {"type": "float"},
    "return_when": {"type": "str", "choices": ["all", "any"]},
    "signal": {"type": "str"},
    "older_than": {"type": "str"},
    "output": {"type": "str", "choices": ["none", "tail"]},
    "tail_lines": {"type": "int"},
}

# The shared fast path, loaded by its path: the collection may be installed,
# or only its folders configured (library =, action_plugins =).
# The same loader is in callback/fast_async.py (a loader cannot live in the file it loads);
# both use one module name, so the file is loaded once per process.
_SHARED = "ansible_collections_native_async_jobs_one_command"


def _one_command():
    if _SHARED not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "plugin_utils", "one_command.py")
        spec = importlib.util.spec_from_file_location(_SHARED, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_SHARED] = module
        spec.loader.exec_module(module)
    return sys.modules[_SHARED]


class ActionModule(ActionBase):

    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        results = super().run(tmp, task_vars)

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

        # Under its own name the collection's module; under the builtin's, the
        # module that name finds (ours when the library path is set).
        resolved = getattr(self._task, "resolved_action", None) or self._task.action
        module = MODULE if resolved == MODULE else LEGACY_MODULE
        one = _one_command()
        with one.held(self, task_vars, one.Launchers.for_lookup(self, module), stdin=False):
            answer = self._execute_module(module_name=module, task_vars=task_vars, module_args=module_args)
        results = merge_hash(results, answer)

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
