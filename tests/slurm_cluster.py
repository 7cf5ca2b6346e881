"""A real one-node SLURM on 127.0.0.1 for the cluster test, started and stopped by the test.

Debian's slurmctld, slurmd, slurm-client and munge are installed with apt when absent (root
only). The configuration is written to /etc/slurm/slurm.conf, where the ``srun`` inside a job
finds it (the Snakemake job step drops ``SLURM_CONF`` from its environment); the state, spool
and logs live in a temporary folder. On exit the daemons started here, and only those, are
stopped, and /etc/slurm/slurm.conf is removed (or a file that was there before is put back), so
that the ``scontrol`` which the Snakemake SLURM plugin runs at every start, also in the other
tests, fails at once for want of a configuration instead of waiting 10 s for a controller that
is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from leftovers import end_processes_under

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
CONF = Path("/etc/slurm/slurm.conf")
DAEMONS = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged"]


class Unavailable(Exception):
    """SLURM cannot run here; the message says what was missing."""


def install() -> None:
    """apt-get the packages if a daemon or client is missing (as root, with apt)."""
    if all(os.path.exists(d) for d in DAEMONS) and shutil.which("sbatch"):
        return
    if os.geteuid() != 0:
        raise Unavailable("SLURM is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        raise Unavailable("SLURM is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)  # stale package lists
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise Unavailable(f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr[-500:]}")


def munge_works() -> bool:
    if not shutil.which("munge"):
        return False
    cred = subprocess.run(["munge", "-n"], capture_output=True)
    return cred.returncode == 0 and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0


def slurm_conf(folder: Path, host: str, cpus: int, memory_mb: int) -> str:
    return f"""ClusterName=stpp-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=10
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """``with Cluster(folder) as cluster:`` -- ``cluster.env`` is the environment for its clients."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[subprocess.Popen] = []
        self.env = dict(os.environ)
        self.wrote_conf = False

    def __enter__(self) -> "Cluster":
        if not hasattr(os, "geteuid") or os.uname().sysname != "Linux":
            raise Unavailable("the one-node SLURM needs Linux")
        install()
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _daemon(self, cmd: list[str], log: str) -> subprocess.Popen:
        out = open(self.folder / log, "w")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.started.append(proc)
        return proc

    def _start(self) -> None:
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        if not munge_works():
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            self._daemon(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "-F"], "munged.out")
            deadline = time.time() + 15
            while not munge_works():
                if time.time() > deadline:
                    raise Unavailable("munged did not start (see munged.out)")
                time.sleep(0.2)
        host = socket.gethostname().split(".")[0]
        memory_mb = min(20000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1000)
        if CONF.exists():
            shutil.copy2(CONF, self.folder / "slurm.conf.before")
        CONF.parent.mkdir(parents=True, exist_ok=True)
        self.wrote_conf = True
        CONF.write_text(slurm_conf(self.folder, host, os.cpu_count() or 1, memory_mb))
        self._daemon(["/usr/sbin/slurmctld", "-D", "-c"], "slurmctld.out")
        self._daemon(["/usr/sbin/slurmd", "-D"], "slurmd.out")
        deadline = time.time() + 30
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if state.stdout.strip() == "idle":
                return
            if time.time() > deadline or any(p.poll() is not None for p in self.started):
                logs = {p.name: p.read_text()[-800:] for p in self.folder.glob("*.out")}
                raise Unavailable(
                    f"SLURM did not come up (sinfo: {state.stdout.strip() or state.stderr.strip()}); logs: {logs}"
                )
            time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        # Jobs first: slurmstepd runs each in a session of its own, which stopping slurmd leaves
        # alive (a job's snakemake process outlived the suite by 51 minutes once).
        if self.started:
            subprocess.run(["scancel", "--full", "--user", str(os.getuid())], env=self.env, capture_output=True)
            deadline = time.time() + 30
            while time.time() < deadline and self.squeue():
                time.sleep(0.5)
        for proc in reversed(self.started):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its session: runuser and munged alike
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.started.clear()
        left = end_processes_under(self.folder, grace=5)  # a job step that scancel did not reach
        if left:
            print(f"killed what the SLURM jobs left running: {left}")
        if self.wrote_conf:
            before = self.folder / "slurm.conf.before"
            if before.exists():
                shutil.copy2(before, CONF)
            else:
                CONF.unlink(missing_ok=True)
            self.wrote_conf = False

    def squeue(self) -> list[dict]:
        """The queue: job id, state and comment (the Snakemake plugin puts the rule there)."""
        out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True, env=self.env)
        return [
            dict(zip(("id", "state", "comment"), line.split("|", 2), strict=False)) for line in out.stdout.splitlines()
        ]

    def scancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], check=True, env=self.env)
