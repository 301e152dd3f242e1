// The per-turn stage timings the server sends (`timings` events, stored turns): one
// table of labels, in pipeline order, for the call page and the admin pages.
// All are ms after the end of the user's speech, except stt_ms, a duration.

export const STAGE_LABELS = {
  endpoint_ms: "Endpoint",
  stt_ms: "STT",
  stt_done_ms: "STT done",
  llm_first_token_ms: "LLM first token",
  first_chunk_ms: "First chunk",
  tts_first_audio_ms: "TTS first audio",
  first_audio_sent_ms: "Voice-to-voice",
};

// The headline figure: the server's voice-to-voice latency.
export const V2V_KEY = "first_audio_sent_ms";
export const V2V_TITLE = "Server voice-to-voice: end of user speech → first agent audio sent";

const ORDER = Object.keys(STAGE_LABELS);

// A stage this table does not know yet (a newer server) still reads as words.
export function stageLabel(key) {
  if (STAGE_LABELS[key]) return STAGE_LABELS[key];
  const words = key.replace(/_ms$/, "").replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// Known stages in pipeline order, then unknown ones alphabetically.
export function orderStages(keys) {
  const rank = (k) => (ORDER.includes(k) ? ORDER.indexOf(k) : ORDER.length);
  return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}
