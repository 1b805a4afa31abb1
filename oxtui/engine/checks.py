"""Probes used for readiness (canary) and liveness: HTTP GET, TCP connect, shell command.

Each returns None when the probe passed, or a short reason when it failed. They run as tasks of
their own, so one slow probe never delays supervision or another worker's probe.
"""

from __future__ import annotations

import asyncio
import os
import signal
from urllib.parse import urlsplit

from ..oxfile.config import HealthConfig


async def http_get(host: str, port: int, path: str, timeout: float) -> tuple[int | None, str | None]:
    """GET path over a fresh connection. Returns (status code, failure reason)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            hosthdr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {hosthdr}\r\nUser-Agent: oxtui-check\r\n"
                         f"Connection: close\r\n\r\n".encode())
            await writer.drain()
            line = await reader.readline()
            parts = line.decode("latin-1").split()
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                return None, f"GET {path}: no HTTP response"
            code = int(parts[1])
            return code, None if 200 <= code < 300 else f"GET {path} answered {code}"
    except TimeoutError:
        return None, f"GET {path}: no answer within {timeout:g}s"
    except OSError as e:
        return None, f"GET {path}: {e.strerror or e}"
    finally:
        if writer is not None:
            writer.close()


async def tcp_connect(host: str, port: int, timeout: float) -> str | None:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return None
    except TimeoutError:
        return f"tcp {host}:{port}: no answer within {timeout:g}s"
    except OSError as e:
        return f"tcp {host}:{port}: {e.strerror or e}"


async def run_cmd(cmd: str, cwd: str, env: dict[str, str], timeout: float) -> str | None:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", cmd, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        async with asyncio.timeout(timeout):
            code = await proc.wait()
    except TimeoutError:
        await kill_session(proc)
        return f"`{cmd}` did not finish within {timeout:g}s"
    return None if code == 0 else f"`{cmd}` exited with {code}"


async def probe(health: HealthConfig, cwd: str, env: dict[str, str]) -> str | None:
    if health.http:
        url = urlsplit(health.http)
        port = url.port or (443 if url.scheme == "https" else 80)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        return (await http_get(url.hostname or "127.0.0.1", port, path, health.timeout))[1]
    if health.tcp:
        return await tcp_connect(health.tcp[0], health.tcp[1], health.timeout)
    assert health.cmd is not None
    return await run_cmd(health.cmd, cwd, env, health.timeout)


async def kill_session(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a helper command started in its own session (with whatever it started) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await proc.wait()
