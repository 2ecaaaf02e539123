"""A real Triton Inference Server for the tests: the tritonserver 2.51 that nvidia-pytriton bundles,
with its Python backend (CPU), in a virtualenv of its own.

The environment is made once from Debian's system python3 (`.venv-triton` in the repository,
requirements/triton-test-server.txt): under the pyenv interpreter the Python-backend stub fails
(`'_thread.RLock' object has no attribute '_recursion_count'`). The NGC container would run the
graphs with its onnxruntime or tensorrt backend; this server runs them in ONNX Runtime through the
Python backend (`dinov2-ros export --triton-platform python`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
ENVIRONMENT = REPO / ".venv-triton"
REQUIREMENTS = REPO / "requirements" / "triton-test-server.txt"


def server_environment() -> Path:
    """The server's virtualenv, made (about a minute) when missing or its requirements changed.
    RuntimeError saying why when it cannot be made."""
    if not SYSTEM_PYTHON.is_file():
        raise RuntimeError(f"no {SYSTEM_PYTHON}: the test server's environment is made from Debian's python3")
    stamp, wanted = ENVIRONMENT / ".requirements.sha256", hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return ENVIRONMENT
    print(f"triton test server: making {ENVIRONMENT} from {SYSTEM_PYTHON} (about a minute) ...", file=sys.stderr)
    shutil.rmtree(ENVIRONMENT, ignore_errors=True)
    for step in (
        [SYSTEM_PYTHON, "-m", "venv", ENVIRONMENT],
        [ENVIRONMENT / "bin" / "pip", "install", "-q", "-r", REQUIREMENTS],
    ):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:  # no venv module, no package index: the tests skip with this reason
            raise RuntimeError(f"`{' '.join(map(str, step))}` failed: {(done.stderr or done.stdout)[-500:]}")
    stamp.write_text(wanted)
    return ENVIRONMENT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TritonServer:
    """tritonserver on `repository` with free ports; `url` is its gRPC address. `stop` and `start` again
    (the same ports) stand for a server that goes away and comes back."""

    def __init__(self, repository: Path, workdir: Path) -> None:
        environment = server_environment()
        site = next((environment / "lib").glob("python3*/site-packages"))
        self.server = workdir / "tritonserver"
        if not self.server.exists():
            shutil.copytree(
                site / "pytriton" / "tritonserver", self.server, ignore=shutil.ignore_patterns("python_backend_stubs")
            )
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            version = subprocess.run(
                [environment / "bin" / "python", "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                capture_output=True, text=True, check=True,
            ).stdout.strip() or version  # fmt: skip
            stub = site / "pytriton" / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
            shutil.copy(stub, self.server / "backends" / "python" / "triton_python_backend_stub")
        self.environment, self.libraries = environment, site / "nvidia_pytriton.libs"
        self.repository, self.log_path = repository, workdir / "tritonserver.log"
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.url = f"localhost:{self.grpc_port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> TritonServer:
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": f"{self.libraries}:{os.environ.get('LD_LIBRARY_PATH', '')}",
            "PATH": f"{self.environment / 'bin'}:{os.environ['PATH']}",
        }
        command = [
            self.server / "bin" / "tritonserver",
            f"--model-repository={self.repository}",
            f"--backend-directory={self.server / 'backends'}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
        ]
        self.process = subprocess.Popen(command, stdout=self.log_path.open("a"), stderr=subprocess.STDOUT, env=env)
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({self.process.returncode}); its log: {self.log_path}")
            try:
                if client.is_server_ready() and self.process.poll() is None:  # ours, not another on the port
                    return self
            except Exception:  # not listening yet
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {timeout_s:.0f} s; its log: {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def statistics(self, model: str) -> dict:
        """The server's own inference statistics of `model` (batch sizes executed, counts)."""
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.url).get_inference_statistics(model, as_json=True)
