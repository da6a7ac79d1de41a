"""The reliability suite runs against both implementations: the native
modules and their Python fallback (NATIVE_ASYNC_IMPL=fallback makes the
launcher run it), so that a case added for one is a case for the other. The
`impl` fixture sets the variable in os.environ, which every launch, status
lookup and playbook run here inherits.

A test that cannot apply to the fallback says why, with
@pytest.mark.native_only("why") (on the test, or on one of its params): kill,
list, prune, job pools, the launcher's binary cache, what only the native
supervisor records. Its fallback run is skipped with that reason. Where the
two must answer differently, the test says why beside the assertion."""

import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "native_only(why): the test cannot apply to the Python fallback, for the reason given")
    # pytest imported this file as the module `conftest`, in place of
    # tests/conftest.py: the suites' `from conftest import base_env` (in this
    # folder and in those collected after it) mean that one.
    top = config.pluginmanager.get_plugin(str(Path(__file__).resolve().parent.parent / "conftest.py"))
    if top is not None:
        sys.modules["conftest"] = top


@pytest.fixture(autouse=True, params=["native", "fallback"])
def impl(request, monkeypatch):
    """The implementation under test: `native` or `fallback`."""
    marker = request.node.get_closest_marker("native_only")
    if marker is not None and not (marker.args and marker.args[0]):
        pytest.fail("native_only needs the reason the test cannot apply to the fallback")
    if request.param == "fallback":
        if marker is not None:
            pytest.skip(f"native only: {marker.args[0]}")
        monkeypatch.setenv("NATIVE_ASYNC_IMPL", "fallback")
    else:
        monkeypatch.delenv("NATIVE_ASYNC_IMPL", raising=False)
    return request.param
