// The call panel's status: the agent's state, "you are speaking", the call button,
// the message line, the connection and ICE pills and the session id.

const STATE_LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  listening: "Listening",
  thinking: "Thinking…",
  speaking: "Speaking",
  ended: "Call ended",
};

const BUTTON = {
  call: { label: "Call", aria: "Start call" },
  connecting: { label: "Cancel", aria: "Cancel call" },
  hangup: { label: "Hang up", aria: "Hang up" },
};

export class CallStatus {
  constructor(ui) {
    this.ui = ui; // {button, buttonLabel, voiceSelect, message, agentState, agentStateLabel, vad, connection, ice, sessionId}
  }

  // kind: "error" (default) | "warn" | "info"; empty text hides the line.
  showMessage(text, kind) {
    const { message } = this.ui;
    message.textContent = text || "";
    message.hidden = !text;
    if (text) message.dataset.kind = kind || "error";
  }

  setAgentState(state) {
    this.ui.agentState.dataset.state = state;
    this.ui.agentStateLabel.textContent = STATE_LABELS[state] || state;
    if (state !== "listening") this.ui.vad.hidden = true;
  }

  setUserSpeaking(speaking) {
    this.ui.vad.hidden = !speaking;
    this.ui.agentState.classList.toggle("user-speaking", speaking);
  }

  // mode: "call" | "connecting" | "hangup". The voice is fixed for the call.
  setButton(mode) {
    const { button, buttonLabel, voiceSelect } = this.ui;
    button.dataset.action = mode;
    button.disabled = false;
    voiceSelect.disabled = mode !== "call";
    buttonLabel.textContent = BUTTON[mode].label;
    button.setAttribute("aria-label", BUTTON[mode].aria);
  }

  setConnection(state) {
    setPill(this.ui.connection, state);
  }

  setIce(state) {
    setPill(this.ui.ice, state);
  }

  setSession(id) {
    this.ui.sessionId.textContent = id || "—";
  }
}

function setPill(el, value) {
  el.textContent = value;
  el.dataset.state = value;
}
