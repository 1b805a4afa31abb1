"""How long a rolling reload of the FastAPI sample takes under README's uvicorn recipe (with the drain).

    .venv/bin/python bench/reload_python.py [--instances 2] [--reloads 5]

Starts `oxtui run` on a copy of sample_apps/fastapi_app with `python -m oxtui.drain.uvicorn --fd 3`
(ready: the log line, then GET /health, so every reload has a canary), waits until it serves, then
times `oxtui reload app` back to back, unloaded. Each replaced instance and the canary drain for
OXTUI_DRAIN_GRACE (1 s), so this is where the reload's own sequencing shows. Needs uvicorn and
fastapi in this venv (`pip install -e '.[test]'`). Binds 127.0.0.1 only; stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reload_bench import free_port, wait_http


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--reloads", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="oxtui-reload-py-") as tmp:
        work = Path(tmp) / "app"
        shutil.copytree(ROOT / "sample_apps" / "fastapi_app", work,
                        ignore=shutil.ignore_patterns("oxfile.toml", "__pycache__"))
        port = free_port()
        oxfile = work / "oxfile.toml"
        oxfile.write_text(f'''
[processes.app]
command = "{PY} -m oxtui.drain.uvicorn --fd 3 main:app"
instances = {args.instances}
listen = "127.0.0.1:{port}"
[processes.app.ready]
log = "Application startup complete"
http = "/health"
timeout = 30
[logs]
dir = "logs"
''')
        env = {**os.environ, "OXTUI_RUNTIME_DIR": tmp}
        engine = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=subprocess.DEVNULL, env=env)
        try:
            wait_http(port, 60)
            took = []
            for _ in range(args.reloads):
                t0 = time.monotonic()
                r = subprocess.run([PY, "-m", "oxtui", "reload", "app", "-c", str(oxfile)],
                                   capture_output=True, text=True, env=env)
                took.append(time.monotonic() - t0)
                if r.returncode != 0:
                    raise SystemExit(f"reload failed: {r.stdout}{r.stderr}")
        finally:
            engine.send_signal(signal.SIGTERM)
            engine.wait(60)
    print(f"{args.instances} instances, {args.reloads} reloads: "
          f"{', '.join(f'{t:.2f}' for t in took)} s; mean {statistics.mean(took):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
