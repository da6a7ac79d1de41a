"""The async_status module's arguments are defined once, in the native module
(crates/async_status/src/module/request.rs, KEYS), which prints them with
`async_status contract`; every other copy is checked against it here, so a
copy that drifts fails a test: the action plugin's argument spec, the docs
sidecar ansible-doc shows, and the Python fallback's table."""

import importlib.util
import json
import subprocess
import sys

import pytest
import yaml

from helpers import MODULES_DIR, ROOT

STATUS = MODULES_DIR / "async_status"


@pytest.fixture(scope="module")
def contract():
    proc = subprocess.run(["/bin/sh", str(STATUS), "contract"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc
    return {k["name"]: k for k in json.loads(proc.stdout)["keys"]}


def user_keys(contract):
    """The keys a task gives (not the controller's `_async_dir` nor internal ones)."""
    return {name: k for name, k in contract.items() if not k["internal"] and not name.startswith("_")}


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_action_plugins_argument_spec_is_the_contract(contract):
    plugin = load(ROOT / "ansible_collection" / "plugins" / "action" / "async_status.py", "native_async_action")
    spec = plugin.ARGUMENT_SPEC
    keys = user_keys(contract)
    assert sorted(spec) == sorted(keys), (sorted(spec), sorted(keys))
    for name, k in keys.items():
        assert spec[name]["type"] == k["type"], (name, spec[name], k)
        assert sorted(spec[name].get("choices", [])) == sorted(k["choices"]), (name, spec[name], k)


def test_the_docs_sidecar_is_the_contract(contract):
    doc = yaml.safe_load((MODULES_DIR / "async_status.yml").read_text())["DOCUMENTATION"]
    options = doc["options"]
    keys = user_keys(contract)
    assert sorted(options) == sorted(keys), (sorted(options), sorted(keys))
    for name, k in keys.items():
        assert options[name]["type"] == k["type"], (name, options[name], k)
        assert sorted(options[name].get("choices", [])) == sorted(k["choices"]), (name, options[name], k)


def test_the_fallbacks_table_is_the_contract(contract):
    sys.argv = ["fallback"]  # it reads its role from argv only when run as a program
    fallback = load(ROOT / "tools" / "fallback.py", "native_async_fallback")
    public = {name: k for name, k in contract.items() if not k["internal"]}
    assert [name for name, _ in fallback.KEYS] == list(public), (fallback.KEYS, list(public))
    for name, applies in fallback.KEYS:
        assert applies == public[name]["applies"], (name, applies, public[name])


def test_every_key_has_one_row_and_the_misplaced_messages_name_where_it_applies(contract):
    for k in contract.values():
        if k["applies"]:
            assert k["applies"].startswith("mode=") and k["applies"][5:].split()[0] in k["modes"], k
            assert len(k["modes"]) == 1, k
