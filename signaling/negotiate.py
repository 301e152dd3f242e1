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
    Every step here acts on the client's SDP, and aiortc/aioice fail on a broken one in
    many ways (ValueError, KeyError, AttributeError, their own InvalidStateError...),
    so any exception is the offer's fault: an OfferError that names the step. The
    caller closes `pc`.
    """
    step = "SDP rejected"
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        step = "offer not answerable"
        for track in local_tracks:
            pc.addTrack(track)  # reuses the offered transceiver of the same kind
        answer = await pc.createAnswer()
        if answer is None:
            raise OfferError("no answer could be made for this offer")
        step = "answer not applicable to this offer"
        await pc.setLocalDescription(answer)
    except OfferError:
        raise
    except Exception as exc:
        raise OfferError(f"{step}: {type(exc).__name__}: {exc}"[:300]) from None
    local = pc.localDescription
    if local is None:
        raise OfferError("no local description after negotiation")
    return str(local.sdp)
