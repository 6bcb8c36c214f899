#!/usr/bin/env python3
"""An independent viewer for camera-agent: python-socketio + aiortc.

It plays the contract's client role with software that shares nothing with
the agent: Socket.IO from python-socketio, WebRTC from aiortc. aiortc offers
only ECDHE-ECDSA DTLS suites and checks the SDP fingerprint against the
certificate, so a stream here proves the agent's ECDSA certificate and its
corrected fingerprint.

Prints one JSON line with what it saw; exits 0 once --frames frames were
decoded, 1 otherwise.
"""

import argparse
import asyncio
import json
import sys
import time

import aiohttp
import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--camera", required=True)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    sio = socketio.AsyncClient(reconnection=False)
    pc = RTCPeerConnection()
    done = asyncio.Event()
    result = {"frames": 0, "width": 0, "height": 0, "first_frame_ms": None}
    state = {"session": None, "requested_at": None, "answered": False, "pending": [],
             "early": []}

    async def count_frames(track):
        while result["frames"] < args.frames:
            frame = await track.recv()
            if result["first_frame_ms"] is None:
                result["first_frame_ms"] = round((time.monotonic() - state["requested_at"]) * 1000, 1)
            result["frames"] += 1
            result["width"], result["height"] = frame.width, frame.height
        done.set()

    @pc.on("track")
    def on_track(track):
        if track.kind == "video":
            asyncio.ensure_future(count_frames(track))

    async def add_remote(candidate):
        if candidate is None:
            return
        parsed = candidate_from_sdp(candidate["candidate"].split(":", 1)[1])
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await pc.addIceCandidate(parsed)

    @sio.on("webrtc:signal")
    async def on_signal(signal):
        if state["session"] is None:
            # The offer may overtake the POST /streams answer.
            state["early"].append(signal)
            return
        if signal.get("sessionId") != state["session"]:
            return
        if signal["type"] == "offer":
            await pc.setRemoteDescription(RTCSessionDescription(sdp=signal["sdp"], type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await sio.emit("webrtc:signal", {
                "sessionId": state["session"], "type": "answer",
                "sdp": pc.localDescription.sdp,
            })
            state["answered"] = True
            for candidate in state["pending"]:
                await add_remote(candidate)
            state["pending"].clear()
        elif signal["type"] == "candidate":
            if state["answered"]:
                await add_remote(signal.get("candidate"))
            else:
                state["pending"].append(signal.get("candidate"))

    @sio.on("stream:ended")
    async def on_ended(event):
        if event.get("sessionId") == state["session"] and not done.is_set():
            result["ended_early"] = event.get("reason")
            done.set()

    headers = {"Authorization": f"Bearer {args.token}"}
    await sio.connect(args.url, headers=headers, auth={"token": args.token},
                      transports=["websocket"], wait_timeout=10)
    async with aiohttp.ClientSession(headers=headers) as http:
        state["requested_at"] = time.monotonic()
        async with http.post(f"{args.url}/api/v1/streams", json={"cameraId": args.camera}) as response:
            body = await response.json()
            if response.status != 201:
                print(json.dumps({"error": body}))
                return 1
            state["session"] = body["sessionId"]
        for signal in state["early"]:
            await on_signal(signal)
        state["early"].clear()
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
        except asyncio.TimeoutError:
            result["timeout"] = True
        result["session"] = state["session"]
        async with http.post(f"{args.url}/api/v1/streams/{state['session']}/end",
                             json={"reason": "hangup"}) as response:
            await response.read()
    await pc.close()
    await sio.disconnect()
    print(json.dumps(result))
    return 0 if result["frames"] >= args.frames else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
