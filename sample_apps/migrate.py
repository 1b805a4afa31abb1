"""A one-shot task like `manage.py migrate`: the web servers wait until it has completed (depends_on)."""

import time

for step in ("0001_initial", "0002_add_orders", "0003_index_orders"):
    print(f"applying migration {step} ...", flush=True)
    time.sleep(0.3)
print("migrations applied", flush=True)
