"""A throwaway OpenSSH server of the tests' own on 127.0.0.1, and the test users.

Not a test module: tests/conftest.py starts one `Sshd` per pytest session (the
`sshd` fixture) and stops it by its pid at the end. It never touches the
machine's own sshd: its own config, host key, client key, authorized keys file
and pid file, all in a temp dir, and a free port on 127.0.0.1 only.

Test users (created once, left in place: creating them is idempotent):
  LOGIN_USER  unprivileged, logs in by key, passwordless sudo to anyone through
              a file in /etc/sudoers.d that the session creates and removes;
  OTHER_USER  unprivileged, password OTHER_PASSWORD, the target of `su` become.
root may log in by key too. tools/test-deps.sh installs what this needs.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
LOGIN_USER = "najlogin"
OTHER_USER = "najother"
OTHER_PASSWORD = "najother-Pw-4711"
# One file per session (sudo skips names with a dot): sessions running side by side
# do not remove each other's.
SUDOERS_FILE = Path(f"/etc/sudoers.d/native-async-tests-{os.getpid()}")


def missing_tools():
    """What the SSH tests need and this machine lacks (tools/test-deps.sh installs it)."""
    need = [SSHD, "ssh", "ssh-keygen", "sudo", "setfacl", "useradd", "usermod", "chpasswd", "visudo"]
    return [t for t in need if not (os.access(t, os.X_OK) if t.startswith("/") else shutil.which(t))]


def _sh(*cmd, input=None):
    return subprocess.run(cmd, input=input, capture_output=True, text=True, check=True, timeout=60)


def ensure_users():
    """Creates the test users when missing and makes both able to log in with
    UsePAM no (sshd refuses accounts whose password field starts with `!`)."""
    for user in (LOGIN_USER, OTHER_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            _sh("useradd", "-m", "-s", "/bin/sh", user)
    _sh("usermod", "-p", "*", LOGIN_USER)  # no password, but not locked
    _sh("chpasswd", input=f"{OTHER_USER}:{OTHER_PASSWORD}\n")


def install_sudoers():
    SUDOERS_FILE.parent.mkdir(mode=0o750, exist_ok=True)
    tmp = SUDOERS_FILE.parent / f".{SUDOERS_FILE.name}.tmp"  # sudo skips names with a dot
    tmp.write_text(f"{LOGIN_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    tmp.chmod(0o440)
    _sh("visudo", "-c", "-q", "-f", str(tmp))
    tmp.rename(SUDOERS_FILE)


def remove_sudoers():
    SUDOERS_FILE.unlink(missing_ok=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port):
    """True once the server sends its SSH banner on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class Sshd:
    """One `sshd -D -e -f <own config>` process; `start()` then `stop()`."""

    def __init__(self):
        # Short path: ControlPath sockets and users' reads live under it.
        self.dir = Path(tempfile.mkdtemp(prefix="nassh-", dir="/tmp"))
        self.dir.chmod(0o755)  # unprivileged users read the authorized keys here
        self.host_key = self.dir / "host_key"
        self.client_key = self.dir / "client_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.pid_file = self.dir / "sshd.pid"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.known_hosts = self.dir / "known_hosts"
        self.control_dir = self.dir / "cp"
        self.port = None
        self.proc = None

    def start(self, attempts=3):
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "native-async-test-host", "-f", str(self.host_key))
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "native-async-test-client", "-f", str(self.client_key))
        shutil.copyfile(f"{self.client_key}.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o644)
        self.control_dir.mkdir(mode=0o700)
        # Debian's sshd wants its privilege separation dir (normally made by systemd).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(attempts):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.pid_file}
AuthorizedKeysFile {self.authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers root {LOGIN_USER} {OTHER_USER}
MaxStartups 100:30:200
MaxSessions 100
X11Forwarding no
PrintMotd no
LogLevel INFO
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
""")
            _sh(SSHD, "-t", "-f", str(self.config))
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None and not _answers(self.port):
                time.sleep(0.1)
            if self.proc.poll() is None and _answers(self.port):
                return self
            self._kill()
        raise RuntimeError(f"sshd did not start; its log:\n{self.log.read_text()[-4000:]}")

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # our own process, by its pid
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def stop(self):
        # Ends the ControlPersist masters that ansible's ssh runs left (ours, by
        # their control sockets), then the server.
        for sock in self.control_dir.iterdir() if self.control_dir.is_dir() else ():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "127.0.0.1"],
                           capture_output=True, timeout=10, check=False)
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def host_vars(self, user="root"):
        """Inventory variables that reach this server with ansible's default ssh
        args (ControlMaster/ControlPersist on); host keys are neither checked nor
        kept in the user's own known_hosts."""
        return {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": str(self.port),
            "ansible_user": user,
            "ansible_ssh_private_key_file": str(self.client_key),
            "ansible_ssh_extra_args": f"'-o UserKnownHostsFile={self.known_hosts}'",
        }

    def env(self, pipelining=False):
        """Environment entries for ansible runs against this server."""
        return {
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_PIPELINING": "True" if pipelining else "False",
            "ANSIBLE_TIMEOUT": "30",
        }
