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
cleanup. The command is the launcher's own `#<find>` part, read from the
module file, so it trusts a cached copy exactly as the launcher does. Only
when no copy is there is the module sent, which unpacks and caches it.

Put on the action plugin path (`action_plugins =` or ANSIBLE_ACTION_PLUGINS),
this file also serves `async_status` and `ansible.legacy.async_status`, which
playbooks and the executor's own polling for `poll > 0` use (never
`ansible.builtin.async_status`: ansible-core resolves that name only to its
own plugin). It must not import ansible's own async_status plugin: loaded from
a path, it is imported under that module's name.

Unlike the builtin it does not expand `~` in the async dir with an extra
`echo ~user` round trip: the module expands it on the host, as the user it
runs as (the become user when there is one), which is where the wrapper wrote.
"""

from __future__ import annotations

import json
import os
import re

from ansible.module_utils.json_utils import _filter_non_json_lines
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.release import __version__ as ansible_version
from ansible.utils.vars import merge_hash

MODULE = "native.async_jobs.async_status"
# The builtin's names, when this file is on the action plugin path: the module
# is then whatever `async_status` resolves to (ours, with the library path set).
LEGACY_MODULE = "ansible.legacy.async_status"
# What the launcher prints, and exits with, when the host has no usable copy.
MISS = "native_async: no trusted copy of the binary on this host"
MISS_RC = 127

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

# The finder command of each module file, by path and mtime.
_FINDERS = {}


def finder_of(path):
    """The launcher's `#<find>` part of the module at `path`, as one compact
    command; None when the file is not our launcher."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    key = (path, stamp)
    if key not in _FINDERS:
        with open(path, "rb") as f:
            head = f.read(16384)
        found = re.search(rb"\n#<find>[^\n]*\n(.*?)\n#</find>", head, re.S)
        if not found:
            _FINDERS[key] = None
        else:
            lines = found.group(1).decode("ascii").splitlines()
            _FINDERS[key] = "\n".join(line.strip() for line in lines if not line.lstrip().startswith("#"))
    return _FINDERS[key]


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
        answer = self._run_cached(module, module_args, task_vars)
        if answer is None:
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

    def _run_cached(self, module, module_args, task_vars):
        """The answer of the host's cached binary, in one command; None when
        this lookup cannot take that path (no trusted copy on the host, a
        module that is not ours, a connection that cannot carry it)."""
        if not boolean(task_vars.get("native_async_fast_status", True), strict=False):
            return None
        # The command is POSIX sh: csh, fish and PowerShell hosts take the module's way.
        if getattr(self._connection._shell, "SHELL_FAMILY", "sh") != "sh":
            return None
        if self._loses_output_with_become_password():
            return None
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            module, collection_list=self._task.collections)
        finder = finder_of(found.plugin_resolved_path) if found.resolved else None
        if finder is None:
            return None
        args = dict(module_args, _ansible_check_mode=bool(self._task.check_mode))
        quote = self._connection._shell.quote
        script = "role=status\nset -- --args %s\n%s\necho %s\nexit %d" % (
            quote(json.dumps(args)), finder, quote(MISS), MISS_RC)
        environment = self._compute_environment_string()
        if environment:
            script = "export %s\n%s" % (environment, script)
        res = self._low_level_execute_command(script, sudoable=True)
        if res.get("rc") == MISS_RC and MISS in res.get("stdout", ""):
            return None
        return self._answer_of(res)

    def _loses_output_with_become_password(self):
        """The local connection before ansible-core 2.19 drops output that
        comes with the become success marker when a password is given: such
        a lookup takes the module's way."""
        if self._connection.transport != "local" or not self._connection.become:
            return False
        if tuple(int(p) for p in re.findall(r"\d+", ansible_version)[:2]) >= (2, 19):
            return False
        try:
            return bool(self._connection.become.get_option("become_pass"))
        except KeyError:
            return False

    def _answer_of(self, res):
        """The module's JSON from the command's output (over SSH without input,
        stderr comes merged into stdout, and lines end in CR LF)."""
        stdout = res.get("stdout", "")
        try:
            text, warnings = _filter_non_json_lines(stdout)
            data = json.loads(text)
        except ValueError:
            return {
                "failed": True,
                "msg": "The native async_status did not answer with JSON (rc %s)" % res.get("rc"),
                "module_stdout": stdout,
                "module_stderr": res.get("stderr", ""),
                "rc": res.get("rc"),
            }
        if not isinstance(data, dict):
            return {"failed": True, "msg": "The native async_status answered with JSON that is not an object",
                    "module_stdout": stdout}
        if warnings:
            data.setdefault("warnings", []).extend(warnings)
        # As _execute_module does for every module's result.
        for stream in ("stdout", "stderr"):
            if stream in data and stream + "_lines" not in data:
                data[stream + "_lines"] = (data[stream] or "").splitlines()
        data.setdefault("_ansible_parsed", True)
        return data
