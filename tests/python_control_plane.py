#!/usr/bin/env python3
"""A second, independent control plane for camera-agent's interop test.

It follows ../shared/contract/control-plane-v1.md with software that shares
nothing with the agent or with the Rust stand-in: Socket.IO and Engine.IO
from python-socketio / python-engineio, HTTP from aiohttp. Its defaults
differ from the stand-in's (ping interval 25 s, ping timeout 20 s, a 1 MB
maxPayload, python-socketio's own sid and packet formatting), so a stream
through it shows the agent relies on the contract, not on the stand-in.

It is as strict as the contract: bearer tokens on every REST call and on
the socket (header and CONNECT auth payload), role and party checks, state
checks with `invalid_state`, signals relayed only between the two parties
of a `streaming` session, with `from` added, and acked.

Prints `listening <url>` once serving, then one line per notable event
(`online <device>`, `offline <device>`, `state <session> <state> <reason>`)
so a test can follow it. Stops on SIGTERM or when stdin closes.

    python3 tests/python_control_plane.py --host 10.213.0.1 \
        --camera cam-1:camera-token --client viewer-1:client-token
"""

import argparse
import asyncio
import itertools
import json
import signal
import sys

import socketio
from aiohttp import web


def say(line):
    print(line, flush=True)


def authenticated(handler):
    """Every REST call carries the bearer token (contract section 2)."""
    async def checked(self, request):
        device = self.device(request)
        if device is None:
            return self.fail(401, "unauthorized", "missing or unknown token")
        return await handler(self, request, device)
    return checked


class ControlPlane:
    def __init__(self, cameras, clients):
        # token -> (device id, role); every client is linked to every camera.
        self.tokens = {}
        for device, token in cameras:
            self.tokens[token] = (device, "camera")
        for device, token in clients:
            self.tokens[token] = (device, "client")
        self.sessions = {}
        self.ids = itertools.count(1)
        self.sockets = {}  # device id -> set of sids
        self.sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])
        self.app = web.Application(middlewares=[self.errors])
        self.sio.attach(self.app, socketio_path="socket.io")
        self.app.add_routes([
            web.get("/api/v1/devices/me", self.me),
            web.post("/api/v1/streams", self.create),
            web.post("/api/v1/streams/{sid}/accept", self.accept),
            web.post("/api/v1/streams/{sid}/end", self.end),
            web.get("/api/v1/streams/{sid}", self.get),
        ])
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("webrtc:signal", self.on_signal)

    # --- REST -----------------------------------------------------------

    @staticmethod
    def fail(status, code, message, **extra):
        body = {"error": code, "message": message, **extra}
        return web.json_response(body, status=status)

    @web.middleware
    async def errors(self, request, handler):
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self.fail(404, "not_found", "no such route")
        except web.HTTPMethodNotAllowed:
            return self.fail(400, "bad_request", "method not allowed")

    def device(self, request):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        return self.tokens.get(header[len("Bearer "):])

    async def body(self, request, required):
        if request.content_type != "application/json":
            if required or request.can_read_body:
                raise ValueError("body must be application/json")
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise ValueError("body is not JSON")
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def view(self, session):
        return {key: session[key] for key in ("sessionId", "state", "cameraId", "clientId")}

    @authenticated
    async def me(self, request, device):
        return web.json_response({"id": device[0], "role": device[1], "name": device[0]})

    @authenticated
    async def create(self, request, device):
        try:
            body = await self.body(request, required=True)
        except ValueError as err:
            return self.fail(400, "bad_request", str(err))
        camera = body.get("cameraId")
        if not isinstance(camera, str) or not camera:
            return self.fail(400, "bad_request", "cameraId must be a non-empty string")
        if device[1] != "client":
            return self.fail(403, "forbidden", "only clients request streams")
        if self.tokens_role(camera) != "camera":
            return self.fail(403, "forbidden", "not linked to this camera")
        if not self.sockets.get(camera):
            return self.fail(409, "camera_offline", "the camera is not connected")
        session_id = f"py-{next(self.ids)}"
        session = {"sessionId": session_id, "state": "requested",
                   "cameraId": camera, "clientId": device[0]}
        self.sessions[session_id] = session
        say(f"state {session_id} requested -")
        await self.sio.emit("stream:requested", {
            "sessionId": session_id, "cameraId": camera, "clientId": device[0],
            "requestedAt": "2026-12-01T12:00:00.000Z", "iceServers": [],
        }, to=camera)
        return web.json_response(self.view(session), status=201)

    def tokens_role(self, device_id):
        for known, role in self.tokens.values():
            if known == device_id:
                return role
        return None

    def lookup(self, request, device):
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return None, self.fail(404, "not_found", "unknown session")
        if device[0] not in (session["cameraId"], session["clientId"]):
            return None, self.fail(403, "forbidden", "not a party of this session")
        return session, None

    @authenticated
    async def accept(self, request, device):
        session, error = self.lookup(request, device)
        if error is not None:
            return error
        if device[0] != session["cameraId"]:
            return self.fail(403, "forbidden", "only the session's camera accepts")
        if session["state"] != "requested":
            return self.fail(409, "invalid_state", "session is not requested",
                             state=session["state"])
        session["state"] = "streaming"
        say(f"state {session['sessionId']} streaming -")
        started = {key: session[key] for key in ("sessionId", "cameraId", "clientId")}
        for party in (session["cameraId"], session["clientId"]):
            await self.sio.emit("stream:started", started, to=party)
        return web.json_response({"sessionId": session["sessionId"], "state": "streaming"})

    @authenticated
    async def end(self, request, device):
        try:
            body = await self.body(request, required=False)
        except ValueError as err:
            return self.fail(400, "bad_request", str(err))
        reason = body.get("reason", "ended")
        if not isinstance(reason, str):
            return self.fail(400, "bad_request", "reason must be a string")
        session, error = self.lookup(request, device)
        if error is not None:
            return error
        if session["state"] != "ended":
            session["state"] = "ended"
            say(f"state {session['sessionId']} ended {reason}")
            ended = {"sessionId": session["sessionId"], "reason": reason, "endedBy": device[0]}
            for party in (session["cameraId"], session["clientId"]):
                await self.sio.emit("stream:ended", ended, to=party)
        return web.json_response({"sessionId": session["sessionId"], "state": "ended"})

    @authenticated
    async def get(self, request, device):
        session, error = self.lookup(request, device)
        if error is not None:
            return error
        return web.json_response(self.view(session))

    # --- socket ----------------------------------------------------------

    async def on_connect(self, sid, environ, auth):
        header = environ.get("HTTP_AUTHORIZATION", "")
        token = auth.get("token") if isinstance(auth, dict) else None
        device = self.tokens.get(token) if token else None
        if device is None or header != f"Bearer {token}":
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        await self.sio.save_session(sid, {"device": device[0]})
        await self.sio.enter_room(sid, device[0])
        self.sockets.setdefault(device[0], set()).add(sid)
        say(f"online {device[0]}")

    async def on_disconnect(self, sid, *_reason):
        session = await self.sio.get_session(sid)
        device = session.get("device")
        sids = self.sockets.get(device, set())
        sids.discard(sid)
        if not sids:
            say(f"offline {device}")

    async def on_signal(self, sid, data):
        sender = (await self.sio.get_session(sid)).get("device")
        if not isinstance(data, dict):
            return {"ok": False, "error": "bad_request"}
        session = self.sessions.get(data.get("sessionId"))
        if session is None:
            return {"ok": False, "error": "not_found"}
        if session["state"] != "streaming":
            return {"ok": False, "error": "invalid_state"}
        if sender == session["cameraId"]:
            peer = session["clientId"]
        elif sender == session["clientId"]:
            peer = session["cameraId"]
        else:
            return {"ok": False, "error": "forbidden"}
        if data.get("type") not in ("offer", "answer", "candidate"):
            return {"ok": False, "error": "bad_request"}
        await self.sio.emit("webrtc:signal", {**data, "from": sender}, to=peer)
        return {"ok": True}


def pairs(values):
    out = []
    for value in values:
        device, _, token = value.partition(":")
        if not device or not token:
            raise SystemExit(f"expected DEVICE:TOKEN, got {value!r}")
        out.append((device, token))
    return out


async def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--camera", action="append", default=[], help="DEVICE:TOKEN")
    parser.add_argument("--client", action="append", default=[], help="DEVICE:TOKEN")
    args = parser.parse_args()
    plane = ControlPlane(pairs(args.camera), pairs(args.client))
    runner = web.AppRunner(plane.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    say(f"listening http://{args.host}:{port}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # A test that dies must not leave the server behind: stdin closing stops it.
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read(1) or stop.set())
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
