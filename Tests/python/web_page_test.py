#!/usr/bin/env python3
"""examples/web/index.html in a real headless browser (Debian's chromium), driven over the
DevTools protocol: two browser sessions log in through the gateway and the example core, one
sends a line to the room and a line to the other user, and the other sees both arrive.

    web_page_test.py --ws-port-file FILE [--wss] [--screenshot PNG]

Serves examples/web over HTTP on 127.0.0.1 and prints `http port N`; then waits (60 s at most)
for FILE to hold the port of the gateway's WebSocket listener (path /gw), which must allow the
origin http://127.0.0.1:N and forward to examples/echo_core.py. Prints one line per check,
then 'N passed, M failed'; exits 1 if any failed. Everything it starts it stops. With --wss the page
connects to wss://127.0.0.1:PORT/gw (a wss:// listener with a test certificate, which the browser is
told to accept: --ignore-certificate-errors)."""
import argparse
import asyncio
import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from websockets.asyncio.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Page:
    """One browser tab over its DevTools WebSocket."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def eval(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression, what, seconds=40):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await self.eval(expression):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


# Hang guards, generous: Chromium took over 30 s to open its DevTools port at load 30 (callgrind beside it).
def devtools_port(profile, seconds=90):
    path = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                first = f.readline().strip()
            if first:
                return int(first)
        time.sleep(0.1)
    raise RuntimeError("chromium did not open its DevTools port")


def new_tab(port, url):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?{urllib.parse.quote(url, safe='')}",
                                     method="PUT")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)["webSocketDebuggerUrl"]


async def run(http_port, ws_port, screenshot, secure):
    checks = []
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("FAIL browser: chromium not found (Tools/install-deps.sh installs it)")
        return 0, 1
    profile = tempfile.mkdtemp(prefix="gw-chromium-")
    proc = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}"]
                            + (["--ignore-certificate-errors"] if secure else []) + ["about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = devtools_port(profile)
        scheme = "wss" if secure else "ws"
        page_url = f"http://127.0.0.1:{http_port}/index.html?autologin=1&ws={scheme}://127.0.0.1:{ws_port}/gw&room=7"
        alice_ws = new_tab(port, page_url + "&name=alice&uid=1")
        bob_ws = new_tab(port, page_url + "&name=bob&uid=2")
        async with connect(alice_ws, max_size=None) as a, connect(bob_ws, max_size=None) as b:
            alice, bob = Page(a), Page(b)

            async def check(name, body):
                try:
                    await body()
                    checks.append((name, None))
                except Exception as e:  # every check is reported
                    checks.append((name, f"{type(e).__name__}: {e}"))

            ready = "document.body.dataset.ready === '1'"
            await check("both sessions log in and join room 7", lambda: asyncio.gather(
                alice.wait_for(ready, "alice logged in"), bob.wait_for(ready, "bob logged in")))

            async def room_line():
                await alice.eval("document.getElementById('line').value = 'hello from alice';"
                                 "document.getElementById('send').click()")
                await bob.wait_for("document.getElementById('room').textContent.includes('alice: hello from alice')",
                                   "bob sees alice's line in the room")
                await alice.wait_for("document.getElementById('room').textContent.includes('alice: hello from alice')",
                                     "alice sees her own line pushed back to the room")
            await check("a line sent by one session reaches the room", room_line)

            async def direct():
                await alice.eval("document.getElementById('toUid').value = '2';"
                                 "document.getElementById('directLine').value = 'psst, bob';"
                                 "document.getElementById('sendDirect').click()")
                await bob.wait_for("document.getElementById('user').textContent.includes('from alice (uid 1): psst, bob')",
                                   "bob sees the push to his uid")
            await check("a push to one user reaches that user", direct)

            async def only_bob():
                # A room line sent after the direct push: once alice has it, the direct push was delivered
                # (one link, in order) and had to reach bob alone.
                await bob.eval("document.getElementById('line').value = 'thanks';"
                               "document.getElementById('send').click()")
                await alice.wait_for("document.getElementById('room').textContent.includes('bob: thanks')",
                                     "alice sees bob's answer")
                assert await alice.eval("document.getElementById('user').textContent") == "", \
                    "a push to uid 2 showed up for uid 1"
            await check("the push to one user reaches no one else", only_bob)

            if screenshot:
                shot = await bob.call("Page.captureScreenshot", format="png")
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    failed = 0
    for name, error in checks:
        print(f"PASS {name}" if error is None else f"FAIL {name}: {error}")
        failed += error is not None
    return len(checks) - failed, failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ws-port-file", required=True)
    parser.add_argument("--screenshot")
    parser.add_argument("--wss", action="store_true")
    args = parser.parse_args()
    handler = functools.partial(Quiet, directory=os.path.join(ROOT, "examples", "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http port {server.server_address[1]}", flush=True)
    ws_port = None
    deadline = time.monotonic() + 60
    while ws_port is None and time.monotonic() < deadline:
        try:
            with open(args.ws_port_file) as f:
                text = f.read()
            if text.endswith("\n"):
                ws_port = int(text)
                break
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    if ws_port is None:
        print(f"FAIL setup: no port in {args.ws_port_file} within 60 s")
        return 1
    passed, failed = asyncio.run(asyncio.wait_for(run(server.server_address[1], ws_port, args.screenshot, args.wss), 240))
    server.shutdown()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
