# Copyright: native async for Ansible developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One command per async task, for every task form (docs/how-it-works.md).

ansible-core imports every callback plugin named in `callbacks_enabled`, and
every file on the `callback_plugins` path, in its main process before any
worker is forked, for ansible-playbook and ad hoc `ansible` alike (whether
the callback is then used or not). Importing this file hooks two methods of
ansible-core's ActionBase, which every action plugin inherits:

- `_execute_module`: an async launch (`wrap_async`, from `command`,
  `ansible.builtin.command`, `shell`, `normal` and any module without an
  action plugin of its own, a collection's or `library/`'s) becomes one
  command when the host has the native binary; a lookup through
  `ansible.legacy.async_status` (ansible-core's async_status action, the
  executor's polling for `poll > 0`, gather_facts' parallel mode) too;
- `_remote_expand_user`, for ansible-core's async_status action alone: its
  async dir is left for the host to expand, which saves the `echo ~` command
  before every lookup (the native module expands `~` as the user it runs as).

Everything else, and every task the one command cannot serve, stays
ansible-core's own code path (plugin_utils/one_command.py says which). The
hook does nothing unless the modules ansible-core resolves for async_wrapper
and async_status are this collection's. Under Mitogen it is never reached:
Mitogen's action mixin overrides each method it hooks. Before hooking, it checks that ansible-core's
methods have the parameters it relies on; if not, it leaves ansible-core as
it is and says so once.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: fast_async
type: aggregate
short_description: One remote command per async launch and status lookup
description:
  - Makes an async task's launch, and every status lookup of a job, one remote command when the host has the
    native binary of this collection's async_wrapper and async_status modules, for every task form (short names
    and FQCN, C(ansible.builtin.async_status) included).
  - It acts when it is imported (ansible-core imports it before forking its workers); as a callback it reports
    nothing.
  - Enable it with C(callbacks_enabled) naming C(native.async_jobs.fast_async), or put this folder on the
    callback plugin path.
requirements:
  - The collection's modules on the module path (C(library) or C(ANSIBLE_LIBRARY)).
"""

import importlib.util
import inspect
import os
import sys

from ansible.plugins.action import ActionBase
from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

display = Display()

# The shared fast path, loaded by its path: the collection may be installed,
# or only its folders configured (library =, callback_plugins =).
# The same loader is in action/async_status.py (a loader cannot live in the file it loads);
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


# The parameters of ansible-core's methods the hook relies on, by method.
EXPECTED = {
    "_execute_module": ("module_name", "module_args", "task_vars", "wrap_async"),
    "_low_level_execute_command": ("cmd", "sudoable", "in_data"),
    "_make_tmp_path": ("remote_user",),
    "_update_module_args": ("module_name", "module_args", "task_vars"),
    "_transfer_data": ("remote_path", "data"),
    "_transfer_file": ("local_path", "remote_path"),
    "_fixup_perms2": ("remote_paths", "remote_user", "execute"),
    "_remote_expand_user": ("path", "sudoable"),
}
# ansible-core's own async_status action, wherever its class was loaded from.
CORE_ASYNC_STATUS = os.path.join(os.path.dirname(inspect.getfile(ActionBase)), "async_status.py")
STATUS_MODULES = ("ansible.legacy.async_status", "async_status")


def _mismatch():
    """What in ansible-core is not as the hook expects (None when all is)."""
    for name, params in EXPECTED.items():
        method = getattr(ActionBase, name, None)
        if method is None:
            return "ActionBase has no %s" % name
        have = inspect.signature(method).parameters
        missing = [p for p in params if p not in have]
        if missing:
            return "ActionBase.%s has no parameter %s" % (name, ", ".join(missing))
    return None


_CORE_CLASSES = {}


def _is_core_async_status(action):
    """Whether `action` is ansible-core's async_status action (its class may
    be loaded under either of two module names)."""
    cls = type(action)
    if cls not in _CORE_CLASSES:
        code = getattr(getattr(cls, "run", None), "__code__", None)
        try:
            _CORE_CLASSES[cls] = code is not None and os.path.samefile(code.co_filename, CORE_ASYNC_STATUS)
        except OSError:
            _CORE_CLASSES[cls] = False
    return _CORE_CLASSES[cls]


def install():
    """Hooks ActionBase once per process; a second import does nothing."""
    if getattr(ActionBase, "_native_async_hooked", False):
        return
    why = _mismatch()
    if why is not None:
        display.warning("native.async_jobs.fast_async left ansible-core as it is (%s): async tasks take "
                        "ansible-core's own way." % why)
        ActionBase._native_async_hooked = True
        return
    execute_module = ActionBase._execute_module
    remote_expand_user = ActionBase._remote_expand_user
    execute_params = inspect.signature(execute_module)

    def _execute_module(self, *args, **kwargs):
        try:
            bound = execute_params.bind(self, *args, **kwargs)
        except TypeError:
            return execute_module(self, *args, **kwargs)
        bound.apply_defaults()
        call = bound.arguments
        one = _one_command()
        if call.get("wrap_async"):
            launchers = one.Launchers.for_launch(self)
        elif call.get("module_name") in STATUS_MODULES:
            launchers = one.Launchers.for_lookup(self, call["module_name"])
        else:
            return execute_module(self, *args, **kwargs)
        with one.held(self, call.get("task_vars") or {}, launchers, stdin=bool(call.get("wrap_async"))):
            return execute_module(self, *args, **kwargs)

    def _remote_expand_user(self, path, *args, **kwargs):
        # The async dir of ansible-core's async_status action: the native
        # module expands `~` itself, on the host, so no `echo ~` is run for
        # it (the builtin module would want it expanded: only with ours).
        if (isinstance(path, str) and path.startswith("~") and _is_core_async_status(self)
                and getattr(self._connection._shell, "SHELL_FAMILY", "sh") == "sh"
                and _one_command().Launchers.for_lookup(self) is not None):
            return path
        return remote_expand_user(self, path, *args, **kwargs)

    ActionBase._execute_module = _execute_module
    ActionBase._remote_expand_user = _remote_expand_user
    ActionBase._native_async_hooked = True


class CallbackModule(CallbackBase):
    """Reports nothing: the hook acts when this file is imported."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "native.async_jobs.fast_async"
    CALLBACK_NEEDS_ENABLED = True


install()
