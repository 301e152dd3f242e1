// The server's data-channel protocol (the "events" channel): one JSON object per
// message, named by its `type`, the same names the server uses. The page sends one
// message of its own: a typed turn, textMessage().

export const EVENT_TYPES = [
  "hello", // {session_id}
  "state", // {state: listening | thinking | speaking}
  "vad", // {speaking}
  "user_transcript", // {turn, text, typed}
  "agent_text", // {turn, text}: each chunk as it starts playing
  "turn_end", // {turn, interrupted, spoken_text, reply_text}
  "timings", // {turn, timings: {stage_ms: ms}}
  "backchannel", // {text}: "mm-hmm" over the reply, which went on
  "language", // {heard, answer, spoken, reason}: the caller's language, and whether a voice speaks it
  "error", // {message}
  "bye", // {reason}
];

// The event in one data-channel message, or null for anything that is not a JSON object.
export function parseEvent(data) {
  if (typeof data !== "string") return null;
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (err) {
    console.warn("ignoring non-JSON event", data);
    return null;
  }
  return msg && typeof msg === "object" ? msg : null;
}

// Calls handlers[msg.type](msg); types without a handler (newer servers) are ignored.
export function routeEvent(msg, handlers) {
  if (EVENT_TYPES.includes(msg.type) && handlers[msg.type]) handlers[msg.type](msg);
}

// The longest typed message the server takes (avatar_rtc/conversation/typed.py).
export const MAX_TEXT_CHARS = 2000;

// A typed turn, as the page sends it: the user's words, answered like spoken ones.
export function textMessage(text) {
  return JSON.stringify({ type: "text", text });
}
