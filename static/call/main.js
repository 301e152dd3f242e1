// avatar_rtc browser client: one WebRTC call with the voice agent. No framework,
// no build step, no network access beyond this server.

import { CallController } from "/static/call/controller.js";
import { LatencyTable } from "/static/call/latency.js";
import { MicMeter } from "/static/call/meter.js";
import { ServerStatus } from "/static/call/server.js";
import { CallStatus } from "/static/call/status.js";
import { TextBox } from "/static/call/textbox.js";
import { Transcript } from "/static/call/transcript.js";
import { VoicePicker } from "/static/call/voices.js";

// ?processing=0 switches the browser's echo canceller, noise suppression and auto
// gain off (automated tests feed a fake mic that the canceller would mute).
const processing = new URLSearchParams(window.location.search).get("processing") !== "0";

const $ = (id) => document.getElementById(id);
const button = $("call-button");
const unmute = $("unmute-audio");

const voices = new VoicePicker({ picker: $("voice-picker"), select: $("voice-select"), info: $("voice-info") });
const views = {
  status: new CallStatus({
    button,
    buttonLabel: $("call-button-label"),
    voiceSelect: $("voice-select"),
    message: $("message"),
    agentState: $("agent-state"),
    agentStateLabel: $("agent-state-label"),
    vad: $("vad-indicator"),
    connection: $("connection-state"),
    ice: $("ice-state"),
    sessionId: $("session-id"),
  }),
  meter: new MicMeter({ level: $("mic-level"), fill: $("mic-level-fill") }),
  transcript: new Transcript({ list: $("transcript"), empty: $("transcript-empty") }),
  latency: new LatencyTable({ head: $("latency-head"), body: $("latency-body"), empty: $("latency-empty") }),
  server: new ServerStatus({ dot: $("server-dot"), text: $("server-text"), backends: $("backends") }),
};
const controller = new CallController({ processing, views, audio: $("remote-audio"), unmute });
// Created after the controller, which sends what is typed; enabled while a call is open.
views.textbox = new TextBox(
  { form: $("text-form"), input: $("text-input"), send: $("text-send") },
  (text) => controller.sendText(text)
);
window.avatarCall = controller.call;

button.addEventListener("click", () => {
  if (button.dataset.action === "call") {
    // A new call starts from an empty transcript.
    views.transcript.clear();
    views.latency.clear();
    controller.start(voices.selected());
  } else {
    controller.hangUp();
  }
});
unmute.addEventListener("click", () => controller.playAudio());
window.addEventListener("pagehide", () => {
  if (controller.call.inCall) controller.hangUp();
});

views.latency.render();
views.server.check();
voices.load();
