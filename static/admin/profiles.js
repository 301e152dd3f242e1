// Voice profile manager: list, upload with progress, play, test synthesis, edit, delete.
import {
  API,
  api,
  confirmAction,
  el,
  errorText,
  playInto,
  renderPager,
  say,
  setupTokenBox,
  upload,
} from "/static/admin/api.js";
import { fmtDate, fmtSeconds } from "/static/shared/format.js";

const PAGE_SIZE = 20;
const SAMPLE_TEXT = "Hello! This is how this voice sounds.";

const $ = (id) => document.getElementById(id);
const ui = {
  backendInfo: $("backend-info"),
  form: $("upload-form"),
  name: $("up-name"),
  voice: $("up-voice"),
  description: $("up-description"),
  reference: $("up-reference"),
  speed: $("up-speed"),
  speedValue: $("up-speed-value"),
  audio: $("up-audio"),
  uploadButton: $("upload-button"),
  progressWrap: $("upload-progress-wrap"),
  progress: $("upload-progress"),
  progressLabel: $("upload-progress-label"),
  uploadMessage: $("upload-message"),
  list: $("profile-list"),
  count: $("profiles-count"),
  empty: $("profiles-empty"),
  listMessage: $("profiles-message"),
  pager: $("profiles-pager"),
};

// /admin/api/backends: {tts, can_clone, voices, profile_backends}
let backends = { tts: "", can_clone: false, voices: [], profile_backends: [] };
let offset = 0;
let loadSeq = 0;

function speedText(v) {
  return `${Number(v).toFixed(2)}×`;
}

function voiceOptions(select, selected) {
  const current = selected === undefined ? select.value : selected || "";
  const options = [el("option", { value: "" }, "Server default")];
  for (const name of backends.voices) options.push(el("option", { value: name }, name));
  // A profile may name a voice that is no longer installed: keep it visible.
  if (current && !backends.voices.includes(current)) {
    options.push(el("option", { value: current }, `${current} (not installed)`));
  }
  select.replaceChildren(...options);
  select.value = current;
}

async function loadBackends() {
  try {
    backends = await api(`${API}/backends`);
  } catch (err) {
    say(ui.backendInfo, `Could not read the server's voices: ${errorText(err)}`, "error");
    return;
  }
  voiceOptions(ui.voice);
  const clone = backends.can_clone
    ? "it clones voices from the reference clip"
    : "it cannot clone: a profile picks one of its installed voices and a speed";
  ui.backendInfo.textContent =
    `Running TTS backend: ${backends.tts} — ${clone}. ` +
    `Installed Piper voices: ${backends.voices.length ? backends.voices.join(", ") : "none"}.`;
  ui.backendInfo.dataset.kind = "info";
}

// ----------------------------------------------------------------- list

async function loadProfiles(newOffset) {
  if (newOffset !== undefined) offset = newOffset;
  const seq = ++loadSeq;
  ui.list.setAttribute("aria-busy", "true");
  let page;
  try {
    page = await api(`${API}/profiles?limit=${PAGE_SIZE}&offset=${offset}`);
  } catch (err) {
    if (seq !== loadSeq) return;
    ui.list.setAttribute("aria-busy", "false");
    say(ui.listMessage, `Could not load the profiles: ${errorText(err)}`, "error");
    return;
  }
  if (seq !== loadSeq) return;
  // The last item of a page was deleted: step back a page.
  if (!page.items.length && page.total > 0 && offset > 0) {
    loadProfiles(Math.max(0, offset - PAGE_SIZE));
    return;
  }
  say(ui.listMessage, "");
  ui.list.replaceChildren(...page.items.map(profileCard));
  ui.list.setAttribute("aria-busy", "false");
  ui.empty.hidden = page.total > 0;
  ui.count.textContent = page.total === 1 ? "1 profile" : `${page.total} profiles`;
  renderPager(ui.pager, page, loadProfiles);
}

function badges(p) {
  const wrap = el("div", { class: "badges", "aria-label": "Backends that can speak it" });
  for (const b of p.drivable_by || []) {
    const active = b === backends.tts;
    wrap.append(
      el(
        "span",
        {
          class: `badge badge-backend${active ? " active" : ""}`,
          title: active ? "The running TTS backend can speak this profile" : `Speakable by ${b}`,
          dataset: { backend: b },
        },
        b
      )
    );
  }
  if (backends.tts && !(p.drivable_by || []).includes(backends.tts)) {
    wrap.append(
      el("span", { class: "badge badge-warn" }, `not speakable by ${backends.tts}`)
    );
  }
  return wrap;
}

function meta(label, value) {
  return el("div", {}, el("dt", {}, label), el("dd", {}, value));
}

function profileCard(p) {
  const idBase = `p-${p.id}`;
  const status = el("p", { class: "message", role: "status", "aria-live": "polite", hidden: true });
  const refAudio = el("audio", { class: "ref-audio", controls: true, preload: "auto", hidden: true,
                                 "aria-label": `Reference clip of ${p.name}` });
  const synthAudio = el("audio", { class: "synth-audio", controls: true, preload: "auto",
                                   hidden: true, "aria-label": `Test synthesis of ${p.name}` });

  const playButton = el("button", { type: "button", class: "secondary-button small play-ref" },
    "Play reference");
  playButton.addEventListener("click", async () => {
    playButton.disabled = true;
    say(status, "");
    try {
      await playInto(refAudio, p.audio_url);
    } catch (err) {
      say(status, `Could not play the reference: ${errorText(err)}`, "error");
    } finally {
      playButton.disabled = false;
    }
  });

  const synthInput = el("input", { id: `${idBase}-synth`, type: "text", class: "synth-text",
                                   maxlength: "500", required: true, value: SAMPLE_TEXT });
  const synthButton = el("button", { type: "submit", class: "secondary-button small" }, "Speak");
  const synthForm = el("form", { class: "synth-form" },
    el("label", { for: `${idBase}-synth` }, "Test text"), synthInput, synthButton);
  synthForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = synthInput.value.trim();
    if (!text) {
      say(status, "Type something for the voice to say.", "error");
      synthInput.focus();
      return;
    }
    synthButton.disabled = true;
    synthButton.textContent = "Speaking…";
    say(status, "");
    try {
      await playInto(synthAudio, `${API}/profiles/${encodeURIComponent(p.id)}/synthesize`,
        { method: "POST", json: { text } });
    } catch (err) {
      say(status, `Synthesis failed: ${errorText(err)}`, "error");
    } finally {
      synthButton.disabled = false;
      synthButton.textContent = "Speak";
    }
  });

  const editButton = el("button", { type: "button", class: "secondary-button small",
                                    "aria-expanded": "false" }, "Edit");
  const deleteButton = el("button", { type: "button", class: "danger-button small" }, "Delete");
  const card = el("li", { class: "profile-card", dataset: { id: p.id } });
  const editForm = buildEditForm(p, idBase, status, () => {
    editForm.hidden = true;
    editButton.setAttribute("aria-expanded", "false");
    editButton.focus();
  });
  editButton.addEventListener("click", () => {
    const open = editForm.hidden;
    editForm.hidden = !open;
    editButton.setAttribute("aria-expanded", String(open));
    if (open) editForm.querySelector("input").focus();
  });
  deleteButton.addEventListener("click", async () => {
    if (!(await confirmAction(`Delete the voice profile “${p.name}” and its audio?`))) return;
    deleteButton.disabled = true;
    try {
      await api(`${API}/profiles/${encodeURIComponent(p.id)}`, { method: "DELETE" });
    } catch (err) {
      deleteButton.disabled = false;
      say(status, `Could not delete: ${errorText(err)}`, "error");
      return;
    }
    card.remove();
    $("profiles-heading").focus();
    loadProfiles();
  });

  const voice = p.voice ? p.voice : "default";
  card.append(
    el("div", { class: "profile-head" },
      el("h3", { class: "profile-name" }, p.name),
      badges(p)),
    el("dl", { class: "profile-meta" },
      meta("Backend", p.backend || "—"),
      meta("Voice", voice),
      meta("Speed", speedText(p.speed ?? 1)),
      meta("Clip", fmtSeconds(p.duration_s)),
      meta("Created", fmtDate(p.created_at))),
    p.description ? el("p", { class: "profile-description" }, p.description) : null,
    p.reference_text
      ? el("blockquote", { class: "reference-text" }, `“${p.reference_text}”`)
      : null,
    el("div", { class: "profile-actions" }, playButton, editButton, deleteButton),
    refAudio,
    synthForm,
    synthAudio,
    editForm,
    status
  );
  return card;
}

function buildEditForm(p, idBase, status, close) {
  const field = (label, input, wide) =>
    el("div", { class: wide ? "field wide" : "field" }, el("label", { for: input.id }, label), input);
  const name = el("input", { id: `${idBase}-name`, type: "text", required: true, maxlength: "100",
                             value: p.name });
  const description = el("textarea", { id: `${idBase}-desc`, rows: "2" });
  description.value = p.description || "";
  const reference = el("textarea", { id: `${idBase}-ref`, rows: "2" });
  reference.value = p.reference_text || "";
  const voice = el("select", { id: `${idBase}-voice` });
  voiceOptions(voice, p.voice || "");
  const speedOut = el("output", { for: `${idBase}-speed` }, speedText(p.speed ?? 1));
  const speed = el("input", { id: `${idBase}-speed`, type: "range", min: "0.5", max: "2",
                              step: "0.05", value: String(p.speed ?? 1) });
  speed.addEventListener("input", () => {
    speedOut.textContent = speedText(speed.value);
  });
  const save = el("button", { type: "submit", class: "primary-button small" }, "Save");
  const cancel = el("button", { type: "button", class: "secondary-button small", onclick: close },
    "Cancel");
  const speedLabel = el("label", { for: speed.id }, "Speed ", speedOut);
  const form = el("form", { class: "edit-form form-grid", hidden: true,
                            "aria-label": `Edit ${p.name}` },
    field("Name", name),
    field("Piper voice", voice),
    field("Description", description, true),
    field("Reference text", reference, true),
    el("div", { class: "field" }, speedLabel, speed),
    el("div", { class: "form-actions wide" }, save, cancel));
  form.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") close();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!name.value.trim()) {
      say(status, "A profile needs a name.", "error");
      name.focus();
      return;
    }
    save.disabled = true;
    try {
      await api(`${API}/profiles/${encodeURIComponent(p.id)}`, {
        method: "PATCH",
        json: {
          name: name.value.trim(),
          description: description.value,
          reference_text: reference.value,
          voice: voice.value,
          speed: Number(speed.value),
        },
      });
    } catch (err) {
      save.disabled = false;
      say(status, `Could not save: ${errorText(err)}`, "error");
      return;
    }
    await loadProfiles();
    const again = ui.list.querySelector(`[data-id="${CSS.escape(p.id)}"] .play-ref`);
    if (again) again.focus();
  });
  return form;
}

// --------------------------------------------------------------- upload

function setProgress(fraction) {
  if (fraction === null) {
    ui.progress.removeAttribute("value"); // indeterminate
    ui.progressLabel.textContent = "Uploading…";
    return;
  }
  const pct = Math.round(fraction * 100);
  ui.progress.value = pct;
  ui.progressLabel.textContent = pct >= 100 ? "Checking the clip on the server…" : `Uploading… ${pct}%`;
}

async function submitUpload(ev) {
  ev.preventDefault();
  say(ui.uploadMessage, "");
  const name = ui.name.value.trim();
  if (!name) {
    say(ui.uploadMessage, "Give the profile a name.", "error");
    ui.name.focus();
    return;
  }
  const file = ui.audio.files && ui.audio.files[0];
  if (!file) {
    say(ui.uploadMessage, "Choose a reference clip (3–30 s of speech).", "error");
    ui.audio.focus();
    return;
  }
  const data = new FormData();
  data.append("name", name);
  data.append("description", ui.description.value);
  data.append("reference_text", ui.reference.value.trim());
  if (ui.voice.value) data.append("voice", ui.voice.value);
  data.append("speed", ui.speed.value);
  data.append("audio", file, file.name);

  ui.uploadButton.disabled = true;
  ui.progressWrap.hidden = false;
  setProgress(0);
  let profile;
  try {
    profile = await upload(`${API}/profiles`, data, setProgress);
  } catch (err) {
    const status = err && err.status ? ` (${err.status})` : "";
    say(ui.uploadMessage, `Upload refused${status}: ${errorText(err)}`, "error");
    return;
  } finally {
    ui.uploadButton.disabled = false;
    ui.progressWrap.hidden = true;
  }
  ui.form.reset();
  ui.speedValue.textContent = speedText(ui.speed.value);
  say(ui.uploadMessage, `Profile “${profile.name}” created.`, "ok");
  await loadProfiles(0); // newest first: the new profile is on the first page
}

// ----------------------------------------------------------------- start

ui.speed.addEventListener("input", () => {
  ui.speedValue.textContent = speedText(ui.speed.value);
});
ui.form.addEventListener("submit", submitUpload);
setupTokenBox(() => {
  loadBackends().then(() => loadProfiles());
});
loadBackends().then(() => loadProfiles());
