// One call's WebRTC connection: the microphone, the RTCPeerConnection (its ICE
// servers from GET /api/ice), the "events" data channel and the offer/answer
// exchange over POST /offer.
// After close() no callback fires, so a late answer or event of an ended call
// never reaches the page.

import { parseEvent } from "/static/call/protocol.js";

const ICE_GATHER_CAP_MS = 2000;
const OFFER_TIMEOUT_MS = 20000;
const ICE_TIMEOUT_MS = 10000;

// A failure with a message meant for the user.
export class CallError extends Error {}
// The call was closed while a step was pending: nothing to report.
export class CallCancelled extends Error {}

export class Connection {
  // handlers: {connectionState(state), iceState(state), track(stream), event(msg),
  //            channelOpen(), channelClosed()}
  constructor(handlers) {
    this.handlers = handlers;
    this.stream = null;
    this.pc = null;
    this.dc = null;
    this.closed = false;
    this.offerAbort = null;
  }

  // Opens the microphone; processing=false turns off echo cancelling, noise
  // suppression and auto gain.
  async openMicrophone(processing) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new CallError(
        "This page needs a secure context (https or localhost) and a browser with microphone support."
      );
    }
    if (!window.RTCPeerConnection) throw new CallError("This browser does not support WebRTC.");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          echoCancellation: processing,
          noiseSuppression: processing,
          autoGainControl: processing,
          channelCount: 1,
        },
        video: false,
      });
    } catch (err) {
      throw new CallError(micErrorText(err));
    }
    if (this.closed) {
      stopStream(stream);
      throw new CallCancelled();
    }
    this.stream = stream;
    return stream;
  }

  // The peer connection, with the data channel and the microphone's track on it.
  // Its ICE servers (TURN credentials issued for this call) come from the server.
  async createPeer() {
    const ice = await fetchIceConfig();
    if (this.closed) throw new CallCancelled();
    const pc = new RTCPeerConnection(ice);
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => {
      if (!this.closed) this.handlers.connectionState(pc.connectionState);
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (!this.closed) this.handlers.iceState(pc.iceConnectionState);
    });
    pc.addEventListener("track", (ev) => {
      if (this.closed || ev.track.kind !== "audio") return;
      this.handlers.track(ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]));
    });

    const dc = pc.createDataChannel("events", { ordered: true });
    this.dc = dc;
    dc.onmessage = (ev) => {
      if (this.closed) return;
      const msg = parseEvent(ev.data);
      if (msg) this.handlers.event(msg);
    };
    dc.addEventListener("open", () => {
      if (!this.closed) this.handlers.channelOpen();
    });
    dc.addEventListener("close", () => {
      if (!this.closed) this.handlers.channelClosed();
    });

    const track = this.stream.getAudioTracks()[0];
    pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    return pc;
  }

  // Offer, ICE gathering (capped), POST /offer; resolves with the applied answer.
  async negotiate(voice) {
    const pc = this.pc;
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, ICE_GATHER_CAP_MS);
    if (this.closed) throw new CallCancelled();
    this.offerAbort = new AbortController();
    let answer;
    try {
      answer = await postOffer(pc.localDescription, voice, this.offerAbort);
    } catch (err) {
      throw this.closed ? new CallCancelled() : err;
    } finally {
      this.offerAbort = null;
    }
    if (this.closed) throw new CallCancelled();
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    return answer;
  }

  // Stops everything this call opened. The peer connection stays readable (its
  // final "closed" state); no event fires on pc.close(), so read it from here.
  close() {
    this.closed = true;
    if (this.offerAbort) this.offerAbort.abort();
    if (this.dc) {
      try {
        this.dc.close();
      } catch (err) {
        /* already closed */
      }
    }
    if (this.pc) {
      for (const sender of this.pc.getSenders()) if (sender.track) sender.track.stop();
      this.pc.close();
    }
    stopStream(this.stream);
    this.stream = null;
  }
}

// {iceServers, iceTransportPolicy} for the RTCPeerConnection, from GET /api/ice.
async function fetchIceConfig() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ICE_TIMEOUT_MS);
  let body = null;
  try {
    const resp = await fetch("/api/ice", { cache: "no-store", signal: abort.signal });
    if (resp.ok) body = await resp.json();
  } catch (err) {
    throw new CallError("Cannot reach the server. Check that it is running and try again.");
  } finally {
    clearTimeout(timer);
  }
  if (!body || !Array.isArray(body.iceServers)) {
    throw new CallError("The server sent no ICE servers for the call.");
  }
  return {
    iceServers: body.iceServers,
    iceTransportPolicy: body.iceTransportPolicy === "relay" ? "relay" : "all",
  };
}

async function postOffer(offer, voice, abort) {
  const timer = setTimeout(() => abort.abort(), OFFER_TIMEOUT_MS);
  let resp;
  try {
    resp = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: offer.sdp, type: offer.type, voice: voice }),
      signal: abort.signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err && err.name === "AbortError") {
      throw new CallError("The server did not answer in time. Please try again.");
    }
    throw new CallError("Cannot reach the server. Check that it is running and try again.");
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (err) {
    body = null;
  }
  if (resp.status === 503) {
    const retry = parseRetryAfter(resp.headers.get("Retry-After"));
    throw new CallError(
      retry !== null
        ? `The server is full right now. Please try again in ${retry} s.`
        : "The server is full right now. Please try again shortly."
    );
  }
  if (resp.status === 429) {
    const retry = parseRetryAfter(resp.headers.get("Retry-After"));
    throw new CallError(
      `Too many calls from this address. Please try again in ${retry !== null ? retry : 60} s.`
    );
  }
  if (!resp.ok) {
    const detail = body && body.error ? body.error : `HTTP ${resp.status}`;
    throw new CallError(`The server refused the call (${detail}).`);
  }
  if (!body || typeof body.sdp !== "string" || body.type !== "answer") {
    throw new CallError("The server sent an invalid answer.");
  }
  return body;
}

function stopStream(stream) {
  if (!stream) return;
  for (const t of stream.getTracks()) t.stop();
}

function waitForIceGathering(pc, capMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// Retry-After as whole seconds from now (delta-seconds or an HTTP date), or null.
function parseRetryAfter(value) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, Math.ceil(secs));
  const date = Date.parse(value);
  if (!Number.isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  return null;
}

function micErrorText(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return "Microphone access was denied. Allow the microphone for this page (the icon in the address bar) and press Call again.";
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return "No microphone was found. Plug one in (or enable it in your system settings) and press Call again.";
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return "The microphone is in use by another application or could not be started.";
  }
  return `Could not open the microphone${err && err.message ? `: ${err.message}` : "."}`;
}
