"""The async_status module's arguments are defined once, in the native module
(crates/async_status/src/module/request.rs, KEYS), which prints them with
`async_status contract`; every other copy is checked against it here, so a
copy that drifts fails a test: the action plugin's argument spec, the docs
sidecar ansible-doc shows, and the Python fallback's table."""

import json
import subprocess

import pytest
import yaml

from helpers import MODULES_DIR, ROOT, load_fallback, load_source

STATUS = MODULES_DIR / "async_status"


@pytest.fixture(scope="module")
def rows():
    """The contract as `async_status contract` prints it: a list of rows, one per key."""
    proc = subprocess.run(["/bin/sh", str(STATUS), "contract"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc
    return json.loads(proc.stdout)["keys"]


@pytest.fixture(scope="module")
def contract(rows):
    """The rows by name (test_every_key_has_one_row_... checks no name is lost here)."""
    return {k["name"]: k for k in rows}


def user_keys(contract):
    """The keys a task gives (not the controller's `_async_dir` nor internal ones)."""
    return {name: k for name, k in contract.items() if not k["internal"] and not name.startswith("_")}


def action_plugin_spec():
    plugin = load_source(ROOT / "ansible_collection" / "plugins" / "action" / "async_status.py", "native_async_action")
    return plugin.ARGUMENT_SPEC


def docs_sidecar_options():
    return yaml.safe_load((MODULES_DIR / "async_status.yml").read_text())["DOCUMENTATION"]["options"]


@pytest.mark.parametrize("copy", [action_plugin_spec, docs_sidecar_options], ids=["action_plugin", "docs_sidecar"])
def test_the_user_keys_copy_is_the_contract(contract, copy):
    spec = copy()
    keys = user_keys(contract)
    assert sorted(spec) == sorted(keys), (sorted(spec), sorted(keys))
    for name, k in keys.items():
        assert spec[name]["type"] == k["type"], (name, spec[name], k)
        assert sorted(spec[name].get("choices", [])) == sorted(k["choices"]), (name, spec[name], k)


def test_the_fallbacks_table_is_the_contract(contract):
    fallback = load_fallback()
    public = {name: k for name, k in contract.items() if not k["internal"]}
    assert [name for name, _ in fallback.KEYS] == list(public), (fallback.KEYS, list(public))
    for name, applies in fallback.KEYS:
        assert applies == public[name]["applies"], (name, applies, public[name])


def test_every_key_has_one_row_and_the_misplaced_messages_name_where_it_applies(rows):
    names = [k["name"] for k in rows]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    for k in rows:
        if k["applies"]:
            assert k["applies"].startswith("mode=") and k["applies"][5:].split()[0] in k["modes"], k
            assert len(k["modes"]) == 1, k
