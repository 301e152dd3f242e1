// One call at a time: starts it, routes its data-channel events to the views and
// ends it (hang up, failure, or the server's bye). Its `call` object is the page's
// public, test-visible view of the call (window.avatarCall).

import { CallCancelled, CallError, Connection } from "/static/call/connection.js";
import { MAX_TEXT_CHARS, routeEvent, textMessage } from "/static/call/protocol.js";
import { fmtMs } from "/static/shared/format.js";
import { V2V_KEY } from "/static/shared/timings.js";

// A "disconnected" peer often recovers; past this it is treated as lost.
const DISCONNECT_GRACE_MS = 6000;

export class CallController {
  // views: {status, meter, transcript, latency, server, textbox}; audio: the <audio> element and
  // its "click to hear" button (shown when autoplay is refused).
  constructor({ processing, views, audio, unmute }) {
    this.processing = processing;
    this.views = views;
    this.audio = audio;
    this.unmute = unmute;
    this.connection = null;
    this.disconnectTimer = 0;
    this.call = {
      pc: null,
      dc: null,
      events: [],
      state: "idle", // agent state: idle | connecting | listening | thinking | speaking | ended
      connectionState: "new", // RTCPeerConnection.connectionState (or "closed" after hang up)
      iceConnectionState: "new",
      sessionId: null,
      error: null,
      endReason: null,
      processing,
      inCall: false,
    };
    this.eventHandlers = {
      hello: (msg) => {
        this.call.sessionId = msg.session_id;
        this.views.status.setSession(msg.session_id);
      },
      state: (msg) => {
        if (this.call.inCall) this.setAgentState(msg.state);
      },
      vad: (msg) => this.views.status.setUserSpeaking(!!msg.speaking),
      user_transcript: (msg) =>
        this.views.transcript.setUserText(msg.turn, msg.text || "", !!msg.typed),
      agent_text: (msg) => this.views.transcript.appendAgentText(msg.turn, msg.text || ""),
      turn_end: (msg) => this.views.transcript.endTurn(msg),
      timings: (msg) => this.showTimings(msg.turn, msg.timings),
      language: (msg) => this.showLanguage(msg),
      error: (msg) => this.showMessage(`Server error: ${msg.message || "unknown error"}`),
      bye: (msg) => {
        this.call.endReason = msg.reason || "ended";
        this.hangUp(`The server ended the call${msg.reason ? `: ${msg.reason}` : "."}`);
      },
    };
    views.status.setButton("call");
    this.setAgentState("idle");
  }

  // voice: a profile id, or null for the server's default voice.
  async start(voice) {
    const { status, meter } = this.views;
    const call = this.call;
    const conn = new Connection({
      connectionState: (state) => this.onConnectionState(conn, state),
      iceState: (state) => {
        call.iceConnectionState = state;
        status.setIce(state);
      },
      track: (stream) => {
        this.audio.srcObject = stream;
        this.playAudio();
      },
      event: (msg) => {
        call.events.push(msg);
        routeEvent(msg, this.eventHandlers);
      },
      channelOpen: () => this.views.textbox.enable(true),
      channelClosed: () => {
        if (call.inCall && call.state !== "connecting") this.hangUp("The server closed the call.");
      },
    });
    this.connection = conn;
    this.showMessage(null);
    Object.assign(call, {
      error: null,
      endReason: null,
      events: [],
      sessionId: null,
      pc: null,
      dc: null,
      connectionState: "new",
      iceConnectionState: "new",
      inCall: true,
    });
    status.setSession(null);
    this.setAgentState("connecting");
    status.setButton("connecting");
    status.setConnection("new");
    status.setIce("new");

    try {
      meter.start(await conn.openMicrophone(this.processing));
      const pc = await conn.createPeer();
      Object.assign(call, {
        pc,
        dc: conn.dc,
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
      });
      const answer = await conn.negotiate(voice);
      call.sessionId = answer.session_id || call.sessionId;
      if (call.sessionId) status.setSession(call.sessionId);
    } catch (err) {
      if (err instanceof CallCancelled || conn.closed) return;
      this.fail(
        err instanceof CallError
          ? err.message
          : `Could not start the call: ${err && err.message ? err.message : err}`
      );
      return;
    }
    status.setButton("hangup");
  }

  // Sends a typed message; false when there is nothing to send or no open channel.
  sendText(text) {
    const words = text.trim();
    const dc = this.connection ? this.connection.dc : null;
    if (!words || !this.call.inCall || !dc || dc.readyState !== "open") return false;
    if (words.length > MAX_TEXT_CHARS) {
      this.showMessage(`A message holds at most ${MAX_TEXT_CHARS} characters.`, "warn");
      return false;
    }
    dc.send(textMessage(words));
    return true;
  }

  // Ends the call from this side; a reason is shown (the call did not end by the user).
  hangUp(reason) {
    this.teardown();
    if (reason) {
      this.showMessage(reason, "warn");
      this.views.server.schedule(0);
    }
    this.showEnded(this.call.pc ? "ended" : "idle");
  }

  fail(text) {
    this.views.server.schedule(0);
    this.teardown();
    this.showMessage(text);
    this.showEnded("idle");
  }

  onConnectionState(conn, state) {
    const { status } = this.views;
    this.call.connectionState = state;
    status.setConnection(state);
    clearTimeout(this.disconnectTimer);
    if (state === "connected") {
      this.showMessage(null);
      if (this.call.state === "connecting") this.setAgentState("listening");
    } else if (state === "disconnected") {
      this.showMessage("Connection interrupted — trying to recover…", "info");
      this.disconnectTimer = setTimeout(() => {
        if (!conn.closed && conn.pc.connectionState === "disconnected") {
          this.hangUp("The connection to the server was lost.");
        }
      }, DISCONNECT_GRACE_MS);
    } else if (state === "failed") {
      this.hangUp(
        "The connection failed. The server may be unreachable from this network (no route for audio)."
      );
    }
  }

  showTimings(turn, timings) {
    if (!timings || typeof timings !== "object") return;
    const v2v = this.views.latency.add(turn, timings)[V2V_KEY];
    if (typeof v2v === "number") {
      this.views.transcript.setVoiceToVoice(turn, `voice-to-voice ${fmtMs(v2v)} ms`);
    }
  }

  // Autoplay may be refused until the user clicks: then the unmute button shows.
  playAudio() {
    const p = this.audio.play();
    if (p && p.catch) {
      p.then(() => {
        this.unmute.hidden = true;
      }).catch((err) => {
        if (err && err.name === "NotAllowedError") this.unmute.hidden = false;
      });
    }
  }

  // The caller's language: a reply no voice speaks comes as text only.
  showLanguage(msg) {
    const heard = msg.heard || "?";
    if (msg.spoken) {
      this.showMessage(`Heard language: ${heard}; the agent answers in ${msg.answer || heard}.`, "info");
    } else {
      this.showMessage(
        `Heard language: ${heard}. No voice speaks it here (${msg.reason || "no voice"}): ` +
          `the agent answers in ${msg.answer || heard} as text only.`, "info");
    }
  }

  // kind "info" is not an error: it leaves call.error as it is.
  showMessage(text, kind) {
    this.views.status.showMessage(text, kind);
    if (text && kind !== "info") this.call.error = text;
  }

  setAgentState(state) {
    this.call.state = state;
    this.views.status.setAgentState(state);
  }

  teardown() {
    clearTimeout(this.disconnectTimer);
    this.views.meter.stop();
    this.views.textbox.enable(false);
    if (this.connection) this.connection.close();
    const pc = this.call.pc;
    if (pc) {
      // No event fires on pc.close(): read the final ("closed") states here.
      this.call.connectionState = pc.connectionState;
      this.call.iceConnectionState = pc.iceConnectionState;
    }
    this.audio.srcObject = null;
    this.unmute.hidden = true;
    this.views.status.setUserSpeaking(false);
    this.call.inCall = false;
  }

  showEnded(agentState) {
    const { status } = this.views;
    const pc = this.call.pc;
    this.setAgentState(agentState);
    status.setConnection(pc ? this.call.connectionState : "idle");
    status.setIce(pc ? this.call.iceConnectionState : "—");
    status.setButton("call");
  }
}
