"""Run `oxtui ARGS` under tracemalloc and dump a snapshot every SECONDS into DIR.

    .venv/bin/python bench/memtrace.py DIR SECONDS -- run oxfile.toml
    .venv/bin/python bench/memtrace.py --diff DIR          # what grew between the 2nd and the last dump

Used by `soak.py --trace` to tell a Python-level leak (grows in tracemalloc) from heap
fragmentation (RSS grows, traced memory does not).
"""

from __future__ import annotations

import sys
import threading
import time
import tracemalloc
from pathlib import Path


def dumper(out: Path, every: float) -> None:
    n = 0
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot()
        snap.dump(str(out / f"snap-{n:03d}.pickle"))
        current, peak = tracemalloc.get_traced_memory()
        with open(out / "traced.csv", "a") as f:
            f.write(f"{n},{time.time():.0f},{current / 2**20:.2f},{peak / 2**20:.2f}\n")
        n += 1


def diff(folder: Path, top: int = 25) -> None:
    dumps = sorted(folder.glob("snap-*.pickle"))
    if len(dumps) < 3:
        raise SystemExit(f"{folder}: need at least 3 dumps, found {len(dumps)}")
    first = tracemalloc.Snapshot.load(str(dumps[1]))      # the first dump is still warm-up
    last = tracemalloc.Snapshot.load(str(dumps[-1]))
    filt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    first, last = first.filter_traces(filt), last.filter_traces(filt)
    print(f"{dumps[1].name} -> {dumps[-1].name}")
    for kind in ("filename", "traceback"):
        print(f"--- by {kind}")
        for stat in last.compare_to(first, kind)[:top if kind == "filename" else 8]:
            print(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks  {stat.traceback.format()[-1].strip() if kind == 'filename' else ''}")
            if kind == "traceback":
                for line in stat.traceback.format()[-16:]:
                    print("      " + line)


def main() -> int:
    if sys.argv[1] == "--diff":
        diff(Path(sys.argv[2]))
        return 0
    out, every = Path(sys.argv[1]), float(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(16)
    threading.Thread(target=dumper, args=(out, every), daemon=True, name="memtrace").start()
    from oxtui.cli import main as cli
    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
