// Conversation browser: calls by date, full-text search, one call's turns with
// timings, the call recording and each turn's audio, export and delete.
// The open call lives in the URL hash (#call=<id>[&turn=<id>]) so it can be linked.
import {
  API,
  api,
  apiBlob,
  confirmAction,
  el,
  errorText,
  playInto,
  renderPager,
  saveBlob,
  say,
  setupTokenBox,
} from "/static/admin/api.js";
import { duration, fmtDate, fmtMs, fmtSeconds } from "/static/shared/format.js";
import { orderStages, stageLabel, V2V_KEY } from "/static/shared/timings.js";

const PAGE_SIZE = 25;

const $ = (id) => document.getElementById(id);
const ui = {
  count: $("calls-count"),
  searchForm: $("search-form"),
  searchInput: $("search-input"),
  searchClear: $("search-clear"),
  filterForm: $("filter-form"),
  since: $("filter-since"),
  until: $("filter-until"),
  filterClear: $("filter-clear"),
  listMessage: $("calls-message"),
  results: $("search-results"),
  resultList: $("result-list"),
  resultsEmpty: $("results-empty"),
  table: $("calls-table"),
  body: $("calls-body"),
  empty: $("calls-empty"),
  pager: $("calls-pager"),
  view: $("call-view"),
  title: $("call-title"),
  close: $("call-close"),
  callMessage: $("call-message"),
  meta: $("call-meta"),
  recUser: $("rec-user"),
  recAgent: $("rec-agent"),
  recNote: $("rec-note"),
  recAudio: $("rec-audio"),
  exportLink: $("call-export"),
  deleteButton: $("call-delete"),
  turnList: $("turn-list"),
  turnsEmpty: $("turns-empty"),
};

let offset = 0;
let listSeq = 0;
let viewSeq = 0;
let openCall = null; // the call JSON shown in the view

const callPath = (id) => `${API}/calls/${encodeURIComponent(id)}`;

function callHref(callId, turnId) {
  const params = new URLSearchParams({ call: callId });
  if (turnId) params.set("turn", turnId);
  return `#${params}`;
}

// <input type=date> gives a local day; the API wants instants. `until` is exclusive,
// so the "To" day runs to the next local midnight.
function dayStart(value, plusDays) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + (plusDays || 0)).toISOString();
}

// ----------------------------------------------------------------- list

async function loadCalls(newOffset) {
  if (newOffset !== undefined) offset = newOffset;
  const seq = ++listSeq;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
  if (ui.since.value) params.set("since", dayStart(ui.since.value));
  if (ui.until.value) params.set("until", dayStart(ui.until.value, 1));
  ui.table.setAttribute("aria-busy", "true");
  let page;
  try {
    page = await api(`${API}/calls?${params}`);
  } catch (err) {
    if (seq !== listSeq) return;
    ui.table.setAttribute("aria-busy", "false");
    say(ui.listMessage, `Could not load the calls: ${errorText(err)}`, "error");
    return;
  }
  if (seq !== listSeq) return;
  if (!page.items.length && page.total > 0 && offset > 0) {
    loadCalls(Math.max(0, offset - PAGE_SIZE));
    return;
  }
  say(ui.listMessage, "");
  ui.body.replaceChildren(...page.items.map(callRow));
  ui.table.setAttribute("aria-busy", "false");
  ui.empty.hidden = page.total > 0;
  ui.count.textContent = page.total === 1 ? "1 call" : `${page.total} calls`;
  renderPager(ui.pager, page, loadCalls);
  markOpenRow();
}

function recordingText(c) {
  if (c.recording_deleted) return "deleted";
  return c.has_recording ? "yes" : "none";
}

function callRow(c) {
  const secs = duration(c.started_at, c.ended_at);
  return el("tr", { dataset: { id: c.id } },
    el("th", { scope: "row" },
      el("a", { href: callHref(c.id), class: "call-link" }, fmtDate(c.started_at))),
    el("td", {}, secs === null ? (c.ended_at ? "—" : "live") : fmtSeconds(secs)),
    el("td", { class: "num" }, String(c.turns ?? 0)),
    el("td", { class: "num" }, String(c.interrupted_turns ?? 0)),
    el("td", {}, c.end_reason || "—"),
    el("td", {}, recordingText(c)));
}

function markOpenRow() {
  const id = openCall ? openCall.id : null;
  for (const tr of ui.body.children) {
    if (tr.dataset.id === id) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
  }
}

// --------------------------------------------------------------- search

async function runSearch(ev) {
  if (ev) ev.preventDefault();
  const q = ui.searchInput.value.trim();
  if (!q) {
    clearSearch();
    return;
  }
  let found;
  try {
    found = await api(`${API}/search?${new URLSearchParams({ q, limit: "50" })}`);
  } catch (err) {
    say(ui.listMessage, `Search failed: ${errorText(err)}`, "error");
    return;
  }
  say(ui.listMessage, "");
  ui.resultList.replaceChildren(...found.items.map(resultItem));
  ui.resultsEmpty.hidden = found.items.length > 0;
  ui.results.hidden = false;
  ui.searchClear.hidden = false;
}

function resultItem(t) {
  const link = el("a", { href: callHref(t.call_id, t.id), class: "result-link" },
    el("span", { class: "result-when" }, `${fmtDate(t.started_at)} · turn ${t.index}`),
    t.user_text ? el("span", { class: "result-user" }, `You: ${t.user_text}`) : null,
    t.reply_text || t.spoken_text
      ? el("span", { class: "result-agent" }, `Agent: ${t.spoken_text || t.reply_text}`)
      : null);
  return el("li", { dataset: { callId: t.call_id, turnId: t.id } }, link);
}

function clearSearch() {
  ui.searchInput.value = "";
  ui.results.hidden = true;
  ui.searchClear.hidden = true;
  ui.resultList.replaceChildren();
}

// ------------------------------------------------------------ call view

function parseHash() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  return { callId: params.get("call"), turnId: params.get("turn") };
}

async function showFromHash() {
  const { callId, turnId } = parseHash();
  if (!callId) {
    closeView(false);
    return;
  }
  const seq = ++viewSeq;
  ui.view.hidden = false;
  ui.view.setAttribute("aria-busy", "true");
  say(ui.callMessage, "");
  let call;
  try {
    call = normalize(await api(callPath(callId)));
  } catch (err) {
    if (seq !== viewSeq) return;
    ui.view.setAttribute("aria-busy", "false");
    openCall = null;
    ui.title.textContent = "Call";
    ui.meta.replaceChildren();
    ui.turnList.replaceChildren();
    say(ui.callMessage, `Could not open the call: ${errorText(err)}`, "error");
    return;
  }
  if (seq !== viewSeq) return;
  renderCall(call);
  ui.view.setAttribute("aria-busy", "false");
  const target = turnId ? document.getElementById(`turn-${turnId}`) : null;
  if (target) {
    target.classList.add("highlight");
    target.scrollIntoView({ block: "center" });
    target.focus();
  } else {
    ui.title.focus();
  }
}

function meta(label, value) {
  return el("div", {}, el("dt", {}, label), el("dd", {}, value));
}

function renderCall(call) {
  openCall = call;
  ui.title.textContent = `Call of ${fmtDate(call.started_at)}`;
  const secs = duration(call.started_at, call.ended_at);
  ui.meta.replaceChildren(
    meta("Call ID", el("code", {}, call.id)),
    meta("Started", fmtDate(call.started_at)),
    meta("Ended", call.ended_at ? `${fmtDate(call.ended_at)} (${call.end_reason || "?"})` : "still live"),
    meta("Length", secs === null ? "—" : fmtSeconds(secs)),
    meta("Turns", `${call.turns ?? 0} (${call.interrupted_turns ?? 0} interrupted)`),
    meta("Voice profile", call.voice_profile_id ? el("code", {}, call.voice_profile_id) : "default"));

  const playable = call.has_recording && !call.recording_deleted;
  ui.recUser.disabled = !playable;
  ui.recAgent.disabled = !playable;
  ui.recAudio.hidden = true;
  ui.recAudio.removeAttribute("src");
  if (call.recording_deleted) say(ui.recNote, "The recording was deleted by the retention policy.");
  else if (!call.has_recording) say(ui.recNote, "This call was not recorded.");
  else say(ui.recNote, "");
  ui.exportLink.href = `${callPath(call.id)}/export`;
  ui.exportLink.setAttribute("download", `call-${call.id}.json`);

  const turns = call.turns_list || [];
  ui.turnList.replaceChildren(...turns.map((t) => turnItem(call, t, playable)));
  ui.turnsEmpty.hidden = turns.length > 0;
  markOpenRow();
}

function bubble(who, label, text, extra) {
  return el("div", { class: `bubble ${who}` },
    el("span", { class: "who" }, label), extra || null,
    el("p", { class: "text" }, text || "—"));
}

function timingTable(timings) {
  const keys = orderStages(Object.keys(timings || {}).filter((k) => typeof timings[k] === "number"));
  if (!keys.length) return el("p", { class: "hint" }, "No timings recorded.");
  const max = Math.max(1, ...keys.map((k) => timings[k]));
  const rows = keys.map((k) => {
    const bar = el("span", { class: "bar", "aria-hidden": "true" });
    bar.style.width = `${Math.max(1, (timings[k] / max) * 100)}%`;
    return el("tr", { class: k === V2V_KEY ? "v2v" : null, dataset: { stage: k } },
      el("th", { scope: "row", title: k }, stageLabel(k)),
      el("td", { class: "bar-cell" }, el("span", { class: "bar-track" }, bar)),
      el("td", { class: "num" }, `${fmtMs(timings[k])} ms`));
  });
  return el("table", { class: "timings" },
    el("caption", { class: "visually-hidden" }, "Stage timings in milliseconds"),
    el("tbody", {}, rows));
}

function turnItem(call, t, playable) {
  const badges = el("span", { class: "badges" },
    t.interrupted ? el("span", { class: "badge badge-interrupted" }, "interrupted") : null,
    t.cut_off ? el("span", { class: "badge badge-warn" }, "cut off") : null);
  const agentText = t.interrupted ? t.spoken_text : t.spoken_text || t.reply_text;
  const agent = bubble("agent", "Agent", agentText);
  if (t.interrupted) {
    agent.classList.add("interrupted");
    if (t.reply_text && t.reply_text !== t.spoken_text) {
      agent.append(el("details", { class: "full-reply" },
        el("summary", {}, "Full reply (not all spoken)"),
        el("p", {}, t.reply_text)));
    }
  }

  const audio = el("audio", { controls: true, preload: "auto", hidden: true,
                              "aria-label": `Audio of turn ${t.index}` });
  const status = el("p", { class: "message", role: "status", hidden: true });
  const audioButton = (track, label, start, end) => {
    if (!playable || start === null || start === undefined || end === null || end === undefined) {
      return null;
    }
    const button = el("button", { type: "button", class: "secondary-button small",
                                  dataset: { track } }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      say(status, "");
      try {
        await playInto(audio, `${t.audio_url}?track=${track}`);
      } catch (err) {
        say(status, `Could not play: ${errorText(err)}`, "error");
      } finally {
        button.disabled = false;
      }
    });
    return button;
  };
  const buttons = [
    audioButton("user", "Play caller audio", t.user_audio_start_ms, t.user_audio_end_ms),
    audioButton("agent", "Play agent audio", t.agent_audio_start_ms, t.agent_audio_end_ms),
  ].filter(Boolean);

  return el("li", { class: "turn-card", id: `turn-${t.id}`, tabindex: "-1", dataset: { id: t.id } },
    el("div", { class: "turn-head" },
      el("h4", {}, `Turn ${t.index}`),
      el("span", { class: "turn-time" }, fmtDate(t.started_at)),
      badges),
    el("div", { class: "turn-body" },
      el("div", { class: "bubbles" }, bubble("user", "Caller", t.user_text), agent),
      timingTable(t.timings)),
    buttons.length ? el("div", { class: "turn-audio" }, ...buttons, audio) : null,
    status);
}

function closeView(updateHash) {
  viewSeq++;
  openCall = null;
  ui.view.hidden = true;
  if (ui.recAudio.dataset.blobUrl) URL.revokeObjectURL(ui.recAudio.dataset.blobUrl);
  ui.recAudio.removeAttribute("src");
  ui.turnList.replaceChildren();
  markOpenRow();
  if (updateHash && window.location.hash) {
    history.pushState(null, "", window.location.pathname + window.location.search);
  }
}

async function playRecording(track) {
  if (!openCall) return;
  say(ui.recNote, "");
  try {
    await playInto(ui.recAudio, `${callPath(openCall.id)}/recording?track=${track}`);
    ui.recAudio.setAttribute("aria-label", `Call recording, ${track === "user" ? "caller" : "agent"} track`);
  } catch (err) {
    say(ui.recNote, `Could not play the recording: ${errorText(err)}`, "error");
  }
}

async function exportCall(ev) {
  ev.preventDefault();
  if (!openCall) return;
  try {
    saveBlob(await apiBlob(`${callPath(openCall.id)}/export`), `call-${openCall.id}.json`);
  } catch (err) {
    say(ui.callMessage, `Export failed: ${errorText(err)}`, "error");
  }
}

async function deleteCall() {
  if (!openCall) return;
  const call = openCall;
  const ok = await confirmAction(
    `Delete the call of ${fmtDate(call.started_at)}, its ${call.turns ?? 0} turns and its recording?`,
    "Delete call");
  if (!ok) return;
  try {
    await api(callPath(call.id), { method: "DELETE" });
  } catch (err) {
    say(ui.callMessage, `Could not delete: ${errorText(err)}`, "error");
    return;
  }
  closeView(true);
  $("calls-heading").focus();
  await loadCalls();
  if (!ui.results.hidden) runSearch();
}

// The API names the turn array "turns" and the summary count "turns" too: the
// detail's array wins there, so keep the count from the array's length.
function normalize(call) {
  if (Array.isArray(call.turns)) {
    call.turns_list = call.turns;
    call.turns = call.turns.length;
  }
  return call;
}

// ----------------------------------------------------------------- start

ui.searchForm.addEventListener("submit", runSearch);
ui.searchClear.addEventListener("click", () => {
  clearSearch();
  ui.searchInput.focus();
});
ui.filterForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (ui.since.value && ui.until.value && ui.since.value > ui.until.value) {
    say(ui.listMessage, "“From” is after “To”.", "error");
    return;
  }
  loadCalls(0);
});
ui.filterClear.addEventListener("click", () => {
  ui.since.value = "";
  ui.until.value = "";
  loadCalls(0);
});
ui.close.addEventListener("click", () => {
  closeView(true);
  const first = ui.body.querySelector("a");
  if (first) first.focus();
});
ui.view.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !ev.target.closest("audio")) ui.close.click();
});
ui.recUser.addEventListener("click", () => playRecording("user"));
ui.recAgent.addEventListener("click", () => playRecording("agent"));
ui.exportLink.addEventListener("click", exportCall);
ui.deleteButton.addEventListener("click", deleteCall);
window.addEventListener("hashchange", showFromHash);
window.addEventListener("popstate", showFromHash);
setupTokenBox(() => {
  loadCalls();
  showFromHash();
  if (!ui.results.hidden) runSearch();
});

loadCalls();
showFromHash();
