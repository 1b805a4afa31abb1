"""A small FastAPI app (no database) for oxtui: every instance serves the same port (fd 3).

    oxtui run sample_apps/fastapi_app/oxfile.toml        then: curl http://127.0.0.1:8000/
"""

import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

RELEASE = os.environ.get("RELEASE", "1")
app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def index() -> str:
    return f"fastapi release {RELEASE} pid {os.getpid()} instance {os.environ.get('OXTUI_INSTANCE')}\n"


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok\n"
