"""A scheduled job (every 30 s in oxfile.toml): each tick runs it afresh, like a cron job."""

import os
import tempfile
import time

folder = tempfile.gettempdir()
cutoff = time.time() - 3600
stale = [f for f in os.listdir(folder) if f.startswith("oxtui-sample-cache-")
         and os.path.getmtime(os.path.join(folder, f)) < cutoff]
print(f"cleanup: {len(stale)} stale cache file(s) older than an hour in {folder}", flush=True)
