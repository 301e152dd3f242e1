"""A bare aiortc client for tests of `POST /offer`: it offers, and connects only when
asked, from a chosen loopback source address."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription


async def offer_sdp() -> tuple[RTCPeerConnection, str]:
    """A real offer as the call page makes it: audio both ways and the data channel."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


@dataclass
class Dialed:
    pc: RTCPeerConnection
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


async def post_offer(base_url: str, body: Any, *, source: str = "127.0.0.1",
                     timeout_s: float = 30.0) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POSTs `body` (bytes as they are, anything else as JSON) from `source`."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with http.post(f"{base_url}/offer", **kwargs) as response:
            data = await response.json(content_type=None)
            return response.status, data, dict(response.headers)


async def dial(base_url: str, *, source: str = "127.0.0.1") -> Dialed:
    """Offers a real call; the answer is not applied yet (see `connect`)."""
    pc, sdp = await offer_sdp()
    status, body, headers = await post_offer(base_url, {"type": "offer", "sdp": sdp},
                                             source=source)
    return Dialed(pc, status, body, headers)


async def connect(dialed: Dialed, timeout_s: float = 10.0) -> float:
    """Applies the answer and waits for ICE and DTLS; returns the seconds it took."""
    assert dialed.status == 200, dialed.body
    connected = asyncio.Event()

    @dialed.pc.on("connectionstatechange")
    def on_state() -> None:
        if dialed.pc.connectionState == "connected":
            connected.set()

    started = time.monotonic()
    await dialed.pc.setRemoteDescription(
        RTCSessionDescription(sdp=dialed.body["sdp"], type="answer"))
    await asyncio.wait_for(connected.wait(), timeout_s)
    return time.monotonic() - started
