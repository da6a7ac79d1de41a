"""'could not find job' only when the job is really absent, wherever ~ pointed."""

import json

from conftest import base_env, write_inventory
from helpers import playbook


def test_a_job_written_under_home_is_found_by_a_lookup_under_the_passwd_home(tmp_path):
    # The wrapper expands ~ with $HOME; the action plugin asks the passwd entry.
    # A task environment that sets HOME makes them differ, as sudo and su can.
    fake_home = tmp_path / "home"
    fake_home.mkdir()
    inv = write_inventory(tmp_path / "hosts", ["h1"])
    pb = tmp_path / "pb.yml"
    pb.write_text(f"""
- hosts: all
  gather_facts: false
  environment:
    HOME: "{fake_home}"
  tasks:
    - command: echo found
      async: 20
      poll: 0
      register: job
    - async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
      register: st
      until: st is finished
      retries: 40
      delay: 0.25
    - assert:
        that: [st.stdout == 'found', st.finished]
    - async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
        mode: cleanup
    - async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
      register: gone
      ignore_errors: true
    - copy:
        content: "{{{{ gone | to_json }}}}"
        dest: "{tmp_path}/gone.json"
""")
    playbook(pb, inv, base_env(tmp_path))
    gone = json.loads((tmp_path / "gone.json").read_text())
    assert gone["msg"] == "could not find job"
    assert any(str(fake_home) in p for p in gone["looked_in"]), gone["looked_in"]
    assert len(gone["looked_in"]) == 2, gone["looked_in"]
