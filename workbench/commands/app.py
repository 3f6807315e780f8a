"""``workbench app``: start the Streamlit app on localhost over a runs root."""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from resid_lib.errors import WorkbenchError

APP_SCRIPT = Path(__file__).resolve().parents[2] / "app" / "main.py"
DEFAULT_PORT = 8501
RUNS_ENV = "RESID_RUNS"  # read by app/common.py


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="explore runs in the browser (Streamlit)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="runs root to explore (default: runs)")
    p.add_argument("--port", type=int, help=f"port on localhost (default: the first free one from {DEFAULT_PORT})")
    p.add_argument("--headless", action="store_true", help="do not open a browser window")
    p.set_defaults(func=_app)


def _app(args: argparse.Namespace) -> int:
    return launch(args.runs, args.port, headless=args.headless)


def launch(runs_root: str | Path, port: int | None = None, *, headless: bool = True) -> int:
    """Serve the app on ``http://localhost:PORT`` over ``runs_root``; prints the address and blocks until stopped.

    Args:
        runs_root: folder searched for run directories (it need not exist yet).
        port: a free port, or None for the first free one from 8501.
        headless: True to not open a browser window.
    Returns:
        The exit status of the Streamlit server (0 after Ctrl-C).
    """
    if not APP_SCRIPT.is_file():
        raise WorkbenchError(f"the app is missing: {APP_SCRIPT} does not exist")
    if port is None:
        port = free_port(DEFAULT_PORT)
    elif not port_is_free(port):
        raise WorkbenchError(f"port {port} on localhost is in use; pass another --port or leave it out")
    runs_root = Path(runs_root).expanduser().resolve()
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
               "--server.address", "localhost", "--server.port", str(port),
               "--server.headless", "true" if headless else "false",
               "--browser.gatherUsageStats", "false", "--browser.serverAddress", "localhost",
               "--client.toolbarMode", "minimal"]
    repo = str(APP_SCRIPT.parents[1])
    env = {**os.environ, RUNS_ENV: str(runs_root),
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    print(f"ReSID workbench app: http://localhost:{port}  (runs root {runs_root}; Ctrl-C to stop)", flush=True)
    server = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.poll() is None:
            server.terminate()
            server.wait()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(start: int, tries: int = 100) -> int:
    """The first free port on localhost from ``start``."""
    for port in range(start, start + tries):
        if port_is_free(port):
            return port
    raise WorkbenchError(f"no free port on localhost in {start}..{start + tries - 1}; pass --port")
