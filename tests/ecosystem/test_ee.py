"""The execution environment definition (ee/): `ansible-builder create` writes
its build context, and the context is complete. Building the image needs podman
or docker, which these machines lack; instead the image's collection install is
replayed from the context (its requirements and tarball, the same
ansible-galaxy command), under a temp dir standing for the image's root, and
the library of its ansible.cfg, rooted there, runs the native modules."""

import json
import re
import shutil
import tarfile

import pytest
import yaml
from conftest import native_active
from ecosystem import PROBE, build_tarball, plain_env, tools_venv
from helpers import ROOT, VENV_BIN, job_files, run

EE = ROOT / "ee"
IMAGE_COLLECTIONS = "/usr/share/ansible/collections"


def test_builder_context_is_complete(tmp_path):
    venv = tools_venv()
    # The repository layout ee/ expects: ee/ beside dist/ with the built tarball.
    shutil.copytree(EE, tmp_path / "ee")
    tarball = build_tarball(tmp_path / "dist")
    env = plain_env(tmp_path, PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    run([venv / "bin" / "ansible-builder", "create", "-f", "ee/execution-environment.yml", "-c", "context",
         "--output-filename", "Containerfile", "-v", "3"], env, cwd=tmp_path, timeout=120)
    context = tmp_path / "context"
    build = context / "_build"

    # requirements.yml names the tarball of this version, and the context carries it.
    with tarfile.open(tarball) as t:
        version = json.load(t.extractfile("MANIFEST.json"))["collection_info"]["version"]
    reqs = yaml.safe_load((build / "requirements.yml").read_text())
    assert reqs == {"collections": [{"name": f"collections/{tarball.name}", "type": "file"}]}, (
        f"ee/requirements.yml must name the {version} tarball (galaxy.yml's version)")
    assert (build / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    cfg = (build / "configs" / "ansible.cfg").read_text()
    library = re.search(r"^library = (\S+)$", cfg, re.M).group(1)
    assert library == f"{IMAGE_COLLECTIONS}/ansible_collections/native/async_jobs/plugins/modules"

    containerfile = (context / "Containerfile").read_text()
    for step in ("COPY _build /build",
                 f'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml '
                 f'--collections-path "{IMAGE_COLLECTIONS}"',
                 "COPY --from=galaxy /usr/share/ansible /usr/share/ansible",
                 "COPY _build/configs/ansible.cfg /etc/ansible/ansible.cfg",
                 "RUN /output/scripts/check_ansible $PYCMD"):
        assert step in containerfile, step
    for script in ("assemble", "check_ansible", "check_galaxy", "entrypoint", "install-from-bindep",
                   "introspect.py", "pip_install"):
        assert (build / "scripts" / script).is_file(), script

    if not native_active():
        pytest.skip("the replay runs the native modules")
    # The galaxy stage, replayed: in /build (the context's _build), the same install command.
    root = tmp_path / "image"
    collections = f"{root}{IMAGE_COLLECTIONS}"
    run([VENV_BIN / "ansible-galaxy", "collection", "install", "-r", "requirements.yml",
         "--collections-path", collections], plain_env(tmp_path), cwd=build, timeout=120)
    image_cfg = tmp_path / "ansible.cfg"
    image_cfg.write_text(cfg.replace(f"library = {IMAGE_COLLECTIONS}", f"library = {collections}"))
    inventory = tmp_path / "hosts"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    async_dir = tmp_path / "async"
    run([VENV_BIN / "ansible-playbook", "-i", inventory, PROBE, "-e", f"ansible_async_dir={async_dir}"],
        plain_env(tmp_path, ANSIBLE_CONFIG=str(image_cfg), ANSIBLE_COLLECTIONS_PATH=collections), timeout=120)
    assert job_files(async_dir) == []
