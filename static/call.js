// avatar_rtc browser client: one WebRTC call with the voice agent.
// Plain script, no framework, no network access beyond this server.
"use strict";

(function () {
  const ICE_GATHER_CAP_MS = 2000;
  const OFFER_TIMEOUT_MS = 20000;
  const DISCONNECT_GRACE_MS = 6000;
  const HEALTH_RETRY_MS = 5000;

  const params = new URLSearchParams(window.location.search);
  // ?processing=0 switches the browser's echo canceller, noise suppression and
  // auto gain off (automated tests feed a fake mic that the canceller would mute).
  const PROCESSING = params.get("processing") !== "0";

  const TIMING_LABELS = {
    endpoint_ms: "Endpoint",
    stt_ms: "STT",
    llm_first_token_ms: "LLM first token",
    first_chunk_ms: "First chunk",
    tts_first_audio_ms: "TTS first audio",
    first_audio_sent_ms: "Voice-to-voice",
  };
  const TIMING_ORDER = Object.keys(TIMING_LABELS);
  const V2V_KEY = "first_audio_sent_ms";

  const STATE_LABELS = {
    idle: "Not connected",
    connecting: "Connecting…",
    listening: "Listening",
    thinking: "Thinking…",
    speaking: "Speaking",
    ended: "Call ended",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    button: $("call-button"),
    buttonLabel: $("call-button-label"),
    unmute: $("unmute-audio"),
    message: $("message"),
    agentState: $("agent-state"),
    agentStateLabel: $("agent-state-label"),
    vad: $("vad-indicator"),
    micLevel: $("mic-level"),
    micFill: $("mic-level-fill"),
    connection: $("connection-state"),
    ice: $("ice-state"),
    sessionId: $("session-id"),
    audio: $("remote-audio"),
    transcript: $("transcript"),
    transcriptEmpty: $("transcript-empty"),
    latencyHead: $("latency-head"),
    latencyBody: $("latency-body"),
    latencyEmpty: $("latency-empty"),
    voicePicker: $("voice-picker"),
    voiceSelect: $("voice-select"),
    voiceInfo: $("voice-info"),
    serverDot: $("server-dot"),
    serverText: $("server-text"),
    backends: $("backends"),
  };

  // Public, test-visible view of the call. Kept up to date by this script.
  const avatarCall = {
    pc: null,
    dc: null,
    events: [],
    state: "idle", // agent state: idle | connecting | listening | thinking | speaking | ended
    connectionState: "new", // RTCPeerConnection.connectionState (or "closed" after hang up)
    iceConnectionState: "new",
    sessionId: null,
    error: null,
    endReason: null,
    processing: PROCESSING,
    inCall: false,
  };
  window.avatarCall = avatarCall;

  // Per-call resources.
  let localStream = null;
  let audioCtx = null;
  let meterRaf = 0;
  let disconnectTimer = 0;
  let offerAbort = null;
  let callGeneration = 0; // bumps on each call / hang up, so stale async work stops

  // Transcript / latency model.
  const turns = new Map(); // turn -> {li, userEl, agentEl, agentText, v2vEl}
  const timingsByTurn = new Map(); // turn -> {key: ms}

  // ---------------------------------------------------------------- messages
  function showMessage(text, kind) {
    if (!text) {
      ui.message.hidden = true;
      ui.message.textContent = "";
      return;
    }
    ui.message.textContent = text;
    ui.message.dataset.kind = kind || "error";
    ui.message.hidden = false;
    if (kind !== "info") avatarCall.error = text;
  }

  function setAgentState(state) {
    avatarCall.state = state;
    ui.agentState.dataset.state = state;
    ui.agentStateLabel.textContent = STATE_LABELS[state] || state;
    if (state !== "listening") ui.vad.hidden = true;
  }

  function setPill(el, value) {
    el.textContent = value;
    el.dataset.state = value;
  }

  function setButton(mode) {
    // mode: "call" | "connecting" | "hangup"
    ui.button.dataset.action = mode;
    ui.button.disabled = false;
    ui.voiceSelect.disabled = mode !== "call"; // the voice is fixed for the call
    if (mode === "call") {
      ui.buttonLabel.textContent = "Call";
      ui.button.setAttribute("aria-label", "Start call");
    } else if (mode === "connecting") {
      ui.buttonLabel.textContent = "Cancel";
      ui.button.setAttribute("aria-label", "Cancel call");
    } else {
      ui.buttonLabel.textContent = "Hang up";
      ui.button.setAttribute("aria-label", "Hang up");
    }
  }

  // ------------------------------------------------------------- mic meter
  function startMeter(stream) {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioCtx = new Ctx();
      const source = audioCtx.createMediaStreamSource(stream);
      const analyser = audioCtx.createAnalyser();
      analyser.fftSize = 1024;
      analyser.smoothingTimeConstant = 0.3;
      source.connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      let shown = 0;
      const tick = () => {
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        const rms = Math.sqrt(sum / buf.length);
        // Map -60..0 dBFS onto 0..100 with a quick attack and slower release.
        const db = 20 * Math.log10(rms + 1e-9);
        const target = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
        shown = target > shown ? target : shown * 0.85 + target * 0.15;
        const pct = Math.round(shown);
        ui.micFill.style.transform = `scaleX(${pct / 100})`;
        ui.micLevel.setAttribute("aria-valuenow", String(pct));
        meterRaf = requestAnimationFrame(tick);
      };
      if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
      meterRaf = requestAnimationFrame(tick);
    } catch (err) {
      console.warn("mic level meter unavailable", err);
    }
  }

  function stopMeter() {
    if (meterRaf) cancelAnimationFrame(meterRaf);
    meterRaf = 0;
    if (audioCtx) audioCtx.close().catch(() => {});
    audioCtx = null;
    ui.micFill.style.transform = "scaleX(0)";
    ui.micLevel.setAttribute("aria-valuenow", "0");
  }

  // ------------------------------------------------------------ transcript
  function ensureTurn(turn) {
    let t = turns.get(turn);
    if (t) return t;
    const li = document.createElement("li");
    li.className = "turn";
    li.dataset.turn = String(turn);
    t = { li, userEl: null, agentEl: null, agentTextEl: null, agentText: "", v2vEl: null };
    turns.set(turn, t);
    // Keep turns in numeric order even if messages arrive out of order.
    let before = null;
    for (const child of ui.transcript.children) {
      if (Number(child.dataset.turn) > turn) {
        before = child;
        break;
      }
    }
    ui.transcript.insertBefore(li, before);
    ui.transcriptEmpty.hidden = true;
    return t;
  }

  function makeBubble(who) {
    const div = document.createElement("div");
    div.className = `bubble ${who}`;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who === "user" ? "You" : "Agent";
    const text = document.createElement("p");
    text.className = "text";
    div.append(label, text);
    return { div, text };
  }

  function setUserText(turn, text) {
    const t = ensureTurn(turn);
    if (!t.userEl) {
      const b = makeBubble("user");
      t.userEl = b.div;
      t.userTextEl = b.text;
      t.li.insertBefore(b.div, t.li.firstChild);
    }
    t.userTextEl.textContent = text;
    scrollTranscript();
  }

  function ensureAgentBubble(t) {
    if (!t.agentEl) {
      const b = makeBubble("agent");
      t.agentEl = b.div;
      t.agentTextEl = b.text;
      t.li.appendChild(b.div);
    }
    return t;
  }

  function appendAgentText(turn, chunk) {
    const t = ensureAgentBubble(ensureTurn(turn));
    const needsSpace = t.agentText && !/\s$/.test(t.agentText) && !/^[\s.,!?;:]/.test(chunk);
    t.agentText += (needsSpace ? " " : "") + chunk;
    t.agentTextEl.textContent = t.agentText;
    t.agentEl.classList.add("live");
    scrollTranscript();
  }

  function endAgentTurn(msg) {
    const t = ensureTurn(msg.turn);
    if (msg.interrupted) {
      ensureAgentBubble(t);
      t.agentText = msg.spoken_text || "";
      t.agentTextEl.textContent = t.agentText;
      t.agentEl.classList.add("interrupted");
      if (!t.agentEl.querySelector(".badge-interrupted")) {
        const badge = document.createElement("span");
        badge.className = "badge badge-interrupted";
        badge.textContent = "interrupted";
        badge.title = msg.reply_text ? `Full reply: ${msg.reply_text}` : "Interrupted";
        t.agentEl.querySelector(".who").after(badge);
      }
    } else if (!t.agentText && (msg.spoken_text || msg.reply_text)) {
      ensureAgentBubble(t);
      t.agentText = msg.spoken_text || msg.reply_text;
      t.agentTextEl.textContent = t.agentText;
    }
    if (t.agentEl) t.agentEl.classList.remove("live");
    scrollTranscript();
  }

  function scrollTranscript() {
    const last = ui.transcript.lastElementChild;
    if (last && last.scrollIntoView) last.scrollIntoView({ block: "nearest" });
  }

  // --------------------------------------------------------------- latency
  function timingLabel(key) {
    if (TIMING_LABELS[key]) return TIMING_LABELS[key];
    return key.replace(/_ms$/, "").replace(/_/g, " ");
  }

  function formatMs(v) {
    if (typeof v !== "number" || !isFinite(v)) return String(v);
    return v >= 100 ? String(Math.round(v)) : v.toFixed(1).replace(/\.0$/, "");
  }

  function renderLatency() {
    const keys = new Set();
    for (const timings of timingsByTurn.values()) for (const k of Object.keys(timings)) keys.add(k);
    const ordered = [
      ...(keys.has(V2V_KEY) ? [V2V_KEY] : []),
      ...TIMING_ORDER.filter((k) => k !== V2V_KEY && keys.has(k)),
      ...[...keys].filter((k) => !TIMING_LABELS[k]).sort(),
    ];
    const head = document.createDocumentFragment();
    const th0 = document.createElement("th");
    th0.scope = "col";
    th0.textContent = "Turn";
    head.appendChild(th0);
    for (const k of ordered) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = timingLabel(k);
      th.title = k;
      if (k === V2V_KEY) {
        th.className = "v2v";
        th.title = "Server voice-to-voice: end of user speech → first agent audio sent";
      }
      head.appendChild(th);
    }
    ui.latencyHead.replaceChildren(head);

    const body = document.createDocumentFragment();
    const turnNums = [...timingsByTurn.keys()].sort((a, b) => a - b);
    for (const turn of turnNums) {
      const timings = timingsByTurn.get(turn);
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(turn);
      tr.appendChild(th);
      for (const k of ordered) {
        const td = document.createElement("td");
        if (k === V2V_KEY) td.className = "v2v";
        td.textContent = k in timings ? formatMs(timings[k]) : "—";
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    ui.latencyBody.replaceChildren(body);
    ui.latencyEmpty.hidden = turnNums.length > 0;
  }

  function setTimings(turn, timings) {
    if (!timings || typeof timings !== "object") return;
    timingsByTurn.set(turn, Object.assign({}, timingsByTurn.get(turn), timings));
    renderLatency();
    const v2v = timingsByTurn.get(turn)[V2V_KEY];
    if (typeof v2v === "number") {
      const t = ensureAgentBubble(ensureTurn(turn));
      if (!t.v2vEl) {
        t.v2vEl = document.createElement("span");
        t.v2vEl.className = "badge badge-v2v";
        t.agentEl.appendChild(t.v2vEl);
      }
      t.v2vEl.textContent = `voice-to-voice ${formatMs(v2v)} ms`;
    }
  }

  // -------------------------------------------------------- event channel
  function onEvent(msg) {
    avatarCall.events.push(msg);
    switch (msg.type) {
      case "hello":
        avatarCall.sessionId = msg.session_id;
        ui.sessionId.textContent = msg.session_id || "—";
        break;
      case "state":
        if (avatarCall.inCall) setAgentState(msg.state);
        break;
      case "vad":
        ui.vad.hidden = !msg.speaking;
        ui.agentState.classList.toggle("user-speaking", !!msg.speaking);
        break;
      case "user_transcript":
        setUserText(msg.turn, msg.text || "");
        break;
      case "agent_text":
        appendAgentText(msg.turn, msg.text || "");
        break;
      case "turn_end":
        endAgentTurn(msg);
        break;
      case "timings":
        setTimings(msg.turn, msg.timings);
        break;
      case "error":
        showMessage(`Server error: ${msg.message || "unknown error"}`);
        break;
      case "bye":
        avatarCall.endReason = msg.reason || "ended";
        hangUp({ reason: `The server ended the call${msg.reason ? `: ${msg.reason}` : "."}` });
        break;
      default:
        break;
    }
  }

  function wireDataChannel(dc, gen) {
    dc.onmessage = (ev) => {
      if (gen !== callGeneration || typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn("ignoring non-JSON event", ev.data);
        return;
      }
      if (msg && typeof msg === "object") onEvent(msg);
    };
  }

  // ----------------------------------------------------------------- call
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

  async function postOffer(offer, voice, gen) {
    offerAbort = new AbortController();
    const timer = setTimeout(() => offerAbort && offerAbort.abort(), OFFER_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch("/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: offer.sdp, type: offer.type, voice: voice }),
        signal: offerAbort.signal,
        cache: "no-store",
      });
    } catch (err) {
      if (gen !== callGeneration) throw new CallCancelled();
      if (err && err.name === "AbortError") {
        throw new CallError("The server did not answer in time. Please try again.");
      }
      throw new CallError("Cannot reach the server. Check that it is running and try again.");
    } finally {
      clearTimeout(timer);
      offerAbort = null;
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
    if (!resp.ok) {
      const detail = body && body.error ? body.error : `HTTP ${resp.status}`;
      throw new CallError(`The server refused the call (${detail}).`);
    }
    if (!body || typeof body.sdp !== "string" || body.type !== "answer") {
      throw new CallError("The server sent an invalid answer.");
    }
    return body;
  }

  function parseRetryAfter(value) {
    if (!value) return null;
    const secs = Number(value);
    if (Number.isFinite(secs)) return Math.max(0, Math.ceil(secs));
    const date = Date.parse(value);
    if (!Number.isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
    return null;
  }

  class CallError extends Error {}
  class CallCancelled extends Error {}

  function selectedVoice() {
    if (ui.voicePicker.hidden) return null;
    return ui.voiceSelect.value || null;
  }

  async function startCall() {
    const gen = ++callGeneration;
    showMessage(null);
    avatarCall.error = null;
    avatarCall.endReason = null;
    avatarCall.events = [];
    avatarCall.sessionId = null;
    avatarCall.pc = null;
    avatarCall.dc = null;
    avatarCall.connectionState = "new";
    avatarCall.iceConnectionState = "new";
    avatarCall.inCall = true;
    ui.sessionId.textContent = "—";
    setAgentState("connecting");
    setButton("connecting");
    setPill(ui.connection, "new");
    setPill(ui.ice, "new");

    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      failCall(gen, "This page needs a secure context (https or localhost) and a browser with microphone support.");
      return;
    }
    if (!window.RTCPeerConnection) {
      failCall(gen, "This browser does not support WebRTC.");
      return;
    }

    try {
      localStream = await navigator.mediaDevices.getUserMedia({
        audio: {
          echoCancellation: PROCESSING,
          noiseSuppression: PROCESSING,
          autoGainControl: PROCESSING,
          channelCount: 1,
        },
        video: false,
      });
    } catch (err) {
      failCall(gen, micErrorText(err));
      return;
    }
    if (gen !== callGeneration) {
      stopStream(localStream);
      return;
    }
    startMeter(localStream);

    const pc = new RTCPeerConnection({ iceServers: [] });
    avatarCall.pc = pc;
    avatarCall.connectionState = pc.connectionState;
    avatarCall.iceConnectionState = pc.iceConnectionState;

    pc.addEventListener("connectionstatechange", () => onConnectionState(pc, gen));
    pc.addEventListener("iceconnectionstatechange", () => {
      if (gen !== callGeneration) return;
      avatarCall.iceConnectionState = pc.iceConnectionState;
      setPill(ui.ice, pc.iceConnectionState);
    });
    pc.addEventListener("track", (ev) => {
      if (gen !== callGeneration || ev.track.kind !== "audio") return;
      const stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      ui.audio.srcObject = stream;
      playRemoteAudio();
    });

    const dc = pc.createDataChannel("events", { ordered: true });
    avatarCall.dc = dc;
    wireDataChannel(dc, gen);
    dc.addEventListener("close", () => {
      if (gen === callGeneration && avatarCall.inCall && avatarCall.state !== "connecting") {
        hangUp({ reason: "The server closed the call." });
      }
    });

    const track = localStream.getAudioTracks()[0];
    pc.addTransceiver(track, { direction: "sendrecv", streams: [localStream] });

    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitForIceGathering(pc, ICE_GATHER_CAP_MS);
      if (gen !== callGeneration) return;
      const answer = await postOffer(pc.localDescription, selectedVoice(), gen);
      if (gen !== callGeneration) return;
      avatarCall.sessionId = answer.session_id || avatarCall.sessionId;
      if (avatarCall.sessionId) ui.sessionId.textContent = avatarCall.sessionId;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      if (err instanceof CallCancelled || gen !== callGeneration) return;
      const text = err instanceof CallError ? err.message : `Could not start the call: ${err && err.message ? err.message : err}`;
      failCall(gen, text);
      return;
    }
    setButton("hangup");
  }

  function onConnectionState(pc, gen) {
    if (gen !== callGeneration) return;
    const state = pc.connectionState;
    avatarCall.connectionState = state;
    setPill(ui.connection, state);
    clearTimeout(disconnectTimer);
    if (state === "connected") {
      showMessage(null);
      if (avatarCall.state === "connecting") setAgentState("listening");
    } else if (state === "disconnected") {
      showMessage("Connection interrupted — trying to recover…", "info");
      disconnectTimer = setTimeout(() => {
        if (gen === callGeneration && pc.connectionState === "disconnected") {
          hangUp({ reason: "The connection to the server was lost." });
        }
      }, DISCONNECT_GRACE_MS);
    } else if (state === "failed") {
      hangUp({
        reason: "The connection failed. The server may be unreachable from this network (no route for audio).",
      });
    }
  }

  function playRemoteAudio() {
    const p = ui.audio.play();
    if (p && p.catch) {
      p.then(() => {
        ui.unmute.hidden = true;
      }).catch((err) => {
        if (err && err.name === "NotAllowedError") ui.unmute.hidden = false;
      });
    }
  }

  function stopStream(stream) {
    if (!stream) return;
    for (const t of stream.getTracks()) t.stop();
  }

  function teardown() {
    clearTimeout(disconnectTimer);
    if (offerAbort) offerAbort.abort();
    stopMeter();
    const pc = avatarCall.pc;
    if (avatarCall.dc) {
      try {
        avatarCall.dc.close();
      } catch (err) {
        /* already closed */
      }
    }
    if (pc) {
      for (const sender of pc.getSenders()) if (sender.track) sender.track.stop();
      pc.close();
      avatarCall.connectionState = pc.connectionState; // "closed"; no event fires on close()
      avatarCall.iceConnectionState = pc.iceConnectionState;
    }
    stopStream(localStream);
    localStream = null;
    ui.audio.srcObject = null;
    ui.unmute.hidden = true;
    ui.vad.hidden = true;
    ui.agentState.classList.remove("user-speaking");
  }

  function failCall(gen, text) {
    if (gen !== callGeneration) return;
    callGeneration++;
    scheduleHealth(0);
    teardown();
    avatarCall.inCall = false;
    showMessage(text);
    setAgentState("idle");
    setPill(ui.connection, avatarCall.pc ? avatarCall.connectionState : "idle");
    setPill(ui.ice, avatarCall.pc ? avatarCall.iceConnectionState : "—");
    setButton("call");
  }

  function hangUp(opts) {
    const reason = opts && opts.reason;
    callGeneration++;
    teardown();
    avatarCall.inCall = false;
    if (reason) {
      showMessage(reason, "warn");
      scheduleHealth(0);
    }
    setAgentState(avatarCall.pc ? "ended" : "idle");
    setPill(ui.connection, avatarCall.pc ? avatarCall.connectionState : "idle");
    setPill(ui.ice, avatarCall.pc ? avatarCall.iceConnectionState : "—");
    setButton("call");
  }

  ui.button.addEventListener("click", () => {
    const action = ui.button.dataset.action;
    if (action === "call") {
      // New call: start from an empty transcript.
      turns.clear();
      timingsByTurn.clear();
      ui.transcript.replaceChildren();
      ui.transcriptEmpty.hidden = false;
      renderLatency();
      startCall();
    } else {
      hangUp();
    }
  });
  ui.unmute.addEventListener("click", playRemoteAudio);
  window.addEventListener("pagehide", () => {
    if (avatarCall.inCall) hangUp();
  });

  // ----------------------------------------------------------- server info
  let healthTimer = 0;
  function scheduleHealth(ms) {
    clearTimeout(healthTimer);
    healthTimer = setTimeout(checkHealth, ms);
  }

  async function checkHealth() {
    clearTimeout(healthTimer);
    let health;
    try {
      const resp = await fetch("/health", { cache: "no-store" });
      health = await resp.json();
    } catch (err) {
      ui.serverDot.dataset.state = "down";
      ui.serverText.textContent = "Server unreachable";
      ui.backends.textContent = "";
      scheduleHealth(HEALTH_RETRY_MS);
      return;
    }
    const ready = !!(health && health.ready);
    ui.serverDot.dataset.state = ready ? "up" : "loading";
    ui.serverText.textContent = ready ? "Server ready" : "Server starting (loading models)…";
    const b = (health && health.backends) || {};
    ui.backends.textContent = ["vad", "stt", "llm", "tts"]
      .filter((k) => b[k])
      .map((k) => `${k.toUpperCase()}: ${b[k]}`)
      .join(" · ");
    if (!ready) scheduleHealth(HEALTH_RETRY_MS);
  }

  // GET /api/voices: {"default": "<piper voice>", "items": [{"id", "name", "backend",
  // "drivable_by": [...], "active": bool}]}. The picker shows only when there are
  // profiles; a profile the running TTS backend cannot speak is listed but disabled.
  // The choice is remembered in localStorage and sent as "voice" in POST /offer.
  const VOICE_KEY = "avatarVoice";
  let voiceItems = new Map(); // profile id -> item

  function rememberedVoice() {
    try {
      return localStorage.getItem(VOICE_KEY) || "";
    } catch (err) {
      return "";
    }
  }

  function rememberVoice(id) {
    try {
      if (id) localStorage.setItem(VOICE_KEY, id);
      else localStorage.removeItem(VOICE_KEY);
    } catch (err) {
      /* storage disabled: the choice lasts for this page only */
    }
  }

  function describeVoice() {
    const item = voiceItems.get(ui.voiceSelect.value);
    if (!item) {
      ui.voiceInfo.textContent = "The server's default voice.";
      ui.voiceInfo.dataset.active = "true";
      return;
    }
    const by = item.drivable_by.length ? item.drivable_by.join(", ") : "no backend";
    ui.voiceInfo.textContent = `Speakable by ${by}; ${
      item.active ? "this server's TTS backend can speak it." : "this server's TTS backend cannot."
    }`;
    ui.voiceInfo.dataset.active = String(item.active);
  }

  async function loadVoices() {
    let data;
    try {
      const resp = await fetch("/api/voices", { cache: "no-store" });
      if (!resp.ok) return;
      data = await resp.json();
    } catch (err) {
      return;
    }
    const items = data && Array.isArray(data.items) ? data.items : [];
    voiceItems = new Map();
    const frag = document.createDocumentFragment();
    const def = document.createElement("option");
    def.value = "";
    def.textContent = data && data.default ? `Default (${data.default})` : "Default";
    frag.appendChild(def);
    for (const v of items) {
      if (!v || typeof v.id !== "string" || !v.id) continue;
      const drivable = Array.isArray(v.drivable_by) ? v.drivable_by.map(String) : [];
      const item = { id: v.id, name: String(v.name ?? v.id), drivable_by: drivable, active: !!v.active };
      voiceItems.set(item.id, item);
      const opt = document.createElement("option");
      opt.value = item.id;
      opt.textContent = `${item.name} — ${drivable.join(", ") || "no backend"}${
        item.active ? "" : " (not on this server)"
      }`;
      opt.disabled = !item.active;
      opt.dataset.backends = drivable.join(" ");
      opt.dataset.active = String(item.active);
      frag.appendChild(opt);
    }
    ui.voiceSelect.replaceChildren(frag);
    const saved = rememberedVoice();
    const savedItem = voiceItems.get(saved);
    ui.voiceSelect.value = savedItem && savedItem.active ? saved : "";
    ui.voicePicker.hidden = voiceItems.size === 0;
    ui.voiceInfo.hidden = ui.voicePicker.hidden;
    describeVoice();
  }
  ui.voiceSelect.addEventListener("change", () => {
    rememberVoice(ui.voiceSelect.value);
    describeVoice();
  });
  window.loadVoices = loadVoices;

  setButton("call");
  setAgentState("idle");
  renderLatency();
  checkHealth();
  loadVoices();
})();
