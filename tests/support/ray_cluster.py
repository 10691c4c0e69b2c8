"""A throwaway Ray cluster for tests: `ray start --head --block` on a free loopback port, 2 CPUs, no dashboard, no
usage stats, its own temporary folder; add_node() joins a second node on this machine (a cluster of two for the
multi-node rules). Stopped by killing the process groups they run in, then any process left that names the
temporary folder, so nothing of it outlives the test module, even on failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.support import local


def available() -> str | None:
    """None if Ray can be started here, else why not."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install -e '.[ray]'; scripts/setup.sh --test does it)"
    return None


def require() -> None:
    """Skip the calling test if Ray is missing; fail it under CI, where scripts/setup.sh --test installs Ray."""
    local.require("Ray", available())


class RayHead:
    def __init__(self, cpus: int = 2) -> None:
        self.cpus = cpus
        self.port = local.free_port()
        self.address = f"127.0.0.1:{self.port}"
        # short: Ray's socket paths live under it and a Unix socket path may not pass 107 bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="wbray", dir="/tmp"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_nodes: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], timeout: float = 60.0) -> None:
        ray_bin = Path(sys.executable).with_name("ray")
        cmd = [
            str(ray_bin), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={self.cpus}", "--num-gpus=0",
            "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
            "--object-store-memory=100000000", f"--temp-dir={self.temp_dir}",
        ]  # fmt: skip
        env = {**env, "RAY_USAGE_STATS_ENABLED": "0"}
        with open(self.temp_dir / "head.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"`ray start --head` exited with {self.proc.returncode}: {self.log_tail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0 and "Ray runtime started" in self.log_tail(20000):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the Ray head did not start within {timeout:.0f} s: {self.log_tail()}")

    def add_node(self, cpus: int, timeout: float = 60.0, resources: dict[str, float] | None = None) -> subprocess.Popen[bytes]:
        """A second Ray node on this machine (its own raylet joining the head), in its own process group: killing
        that group is a node dying. `resources`: custom Ray resources only this node has. Returns once the cluster
        counts it."""
        import json

        import ray

        ray_bin = Path(sys.executable).with_name("ray")
        cmd = [
            str(ray_bin), "start", f"--address={self.address}", "--block", f"--num-cpus={cpus}", "--num-gpus=0",
            "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_dir}", "--object-store-memory=100000000",
            f"--dashboard-agent-listen-port={local.free_port()}", "--disable-usage-stats",
            *([f"--resources={json.dumps(resources)}"] if resources else []),
        ]  # fmt: skip
        before = len([n for n in ray.nodes() if n["Alive"]])
        with open(self.temp_dir / "node.log", "ab") as log:
            node = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
            )  # fmt: skip
        self.extra_nodes.append(node)
        deadline = time.time() + timeout
        while len([n for n in ray.nodes() if n["Alive"]]) <= before:
            if time.time() > deadline or node.poll() is not None:
                raise RuntimeError(f"the second Ray node did not join: {(self.temp_dir / 'node.log').read_text()[-2000:]}")
            time.sleep(0.2)
        return node

    @staticmethod
    def kill_node(node: subprocess.Popen[bytes]) -> None:
        """SIGKILL the node's whole process group (its raylet and every worker on it): what a power cut does."""
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait(timeout=10)

    def log_tail(self, limit: int = 2000) -> str:
        path = self.temp_dir / "head.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def stop(self) -> None:
        for node in self.extra_nodes:
            self.kill_node(node)
        if self.proc is not None and self.proc.poll() is None:
            # `ray start --block` takes its time over SIGTERM (10 s and more): a throwaway cluster is SIGKILLed
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # workers, and anything the group signal missed, name our temporary folder on their command line
        mine = str(self.temp_dir)
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(mine in part for part in p.info["cmdline"] or []):
                    p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
