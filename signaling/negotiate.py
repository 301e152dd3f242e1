"""SDP offer/answer for trickle-free offers (candidates inside the SDP)."""

from __future__ import annotations

from collections.abc import Sequence

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from signaling.offer import OfferError


async def answer_offer(
    pc: RTCPeerConnection, sdp: str, local_tracks: Sequence[MediaStreamTrack] = ()
) -> str:
    """Applies the offer, attaches our tracks to its transceivers, returns the answer SDP.

    aiortc gathers all candidates during setLocalDescription, so the answer is complete.
    """
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise OfferError(f"SDP rejected: {exc}") from None
    for track in local_tracks:
        pc.addTrack(track)  # reuses the offered transceiver of the same kind
    answer = await pc.createAnswer()
    if answer is None:
        raise OfferError("no answer could be made for this offer")
    await pc.setLocalDescription(answer)
    local = pc.localDescription
    if local is None:
        raise OfferError("no local description after negotiation")
    return str(local.sdp)
