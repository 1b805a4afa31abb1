"""`oxtui ls [--json]`: every engine of this user (root: of every user), from any folder."""

from __future__ import annotations

import json
import sys

from ..client.discover import engines
from ..format import FIRST_TO_HAND_OVER, hands_over, human_duration


def ls(as_json: bool) -> int:
    found = engines()
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no engine is running (`oxtui up OXFILE` starts one in the background, `oxtui startup OXFILE` on boot)")
        return 0
    rows = [("OXFILE", "PID", "OXTUI", "UP", "SYSTEMD", "PROCESSES")]
    for e in found:
        if not e["answering"]:
            rows.append((e["oxfile"] or e["socket"], str(e["pid"] or "?"), "?", "-", "-", "not answering"))
            continue
        procs = []
        for p in e["processes"]:
            text = f"{p['name']} {p.get('summary') or str(p['running']) + '/' + str(p['instances'])}"
            if p["oxfile_instances"] != p["instances"]:
                text += f" (oxfile {p['oxfile_instances']})"
            procs.append(text)
        mark = (" (older)" if hands_over(e["version"]) else " (restart once)") if e["older"] else ""
        rows.append((e["oxfile"], str(e["pid"]), e["version"] + mark,
                     human_duration(e["uptime_s"], coarse=True), (e["unit"] or "yes") if e["systemd"] else "no",
                     ", ".join(procs)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = sys.stdout
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5] + "\n")
    if any(e.get("older") and hands_over(e["version"]) for e in found):
        out.write("(older): runs an oxtui older than the installed one; `oxtui upgrade --all` moves every engine to "
                  "it without restarting an app\n")
    if any(e.get("older") and not hands_over(e["version"]) for e in found):
        out.write(f"(restart once): runs an oxtui older than {FIRST_TO_HAND_OVER}, which cannot hand over: `oxtui down "
                  "-c OXFILE && oxtui up OXFILE` moves it (that restarts its apps)\n")
    return 0
