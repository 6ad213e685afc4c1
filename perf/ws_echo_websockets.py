#!/usr/bin/env python3
"""The peer for perf/ws_ab.py: an echo server on the `websockets` package (PyPI), the most used
Python WebSocket server. Each binary message is sent back as it came.

    ws_echo_websockets.py --port P"""
import argparse
import asyncio

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None, ping_interval=None):
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
