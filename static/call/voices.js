// The voice picker. GET /api/voices: {"default": "<piper voice>", "items": [{"id",
// "name", "backend", "drivable_by": [...], "active": bool}]}. The picker shows only
// when there are profiles; a profile the running TTS backend cannot speak is listed
// but disabled. The choice is remembered in localStorage and sent as "voice" in
// POST /offer.

const VOICE_KEY = "avatarVoice";

export class VoicePicker {
  constructor(ui) {
    this.ui = ui; // {picker, select, info}
    this.items = new Map(); // profile id -> item
    ui.select.addEventListener("change", () => {
      remember(ui.select.value);
      this.describe();
    });
  }

  // The chosen profile id, or null for the server's default voice.
  selected() {
    if (this.ui.picker.hidden) return null;
    return this.ui.select.value || null;
  }

  async load() {
    let data;
    try {
      const resp = await fetch("/api/voices", { cache: "no-store" });
      if (!resp.ok) return;
      data = await resp.json();
    } catch (err) {
      return;
    }
    const { picker, select, info } = this.ui;
    const items = data && Array.isArray(data.items) ? data.items : [];
    this.items = new Map();
    const frag = document.createDocumentFragment();
    const def = document.createElement("option");
    def.value = "";
    def.textContent = data && data.default ? `Default (${data.default})` : "Default";
    frag.appendChild(def);
    for (const v of items) {
      if (!v || typeof v.id !== "string" || !v.id) continue;
      const drivable = Array.isArray(v.drivable_by) ? v.drivable_by.map(String) : [];
      const item = { id: v.id, name: String(v.name ?? v.id), drivable_by: drivable, active: !!v.active };
      this.items.set(item.id, item);
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
    select.replaceChildren(frag);
    const saved = remembered();
    const savedItem = this.items.get(saved);
    select.value = savedItem && savedItem.active ? saved : "";
    picker.hidden = this.items.size === 0;
    info.hidden = picker.hidden;
    this.describe();
  }

  describe() {
    const { select, info } = this.ui;
    const item = this.items.get(select.value);
    if (!item) {
      info.textContent = "The server's default voice.";
      info.dataset.active = "true";
      return;
    }
    const by = item.drivable_by.length ? item.drivable_by.join(", ") : "no backend";
    info.textContent = `Speakable by ${by}; ${
      item.active ? "this server's TTS backend can speak it." : "this server's TTS backend cannot."
    }`;
    info.dataset.active = String(item.active);
  }
}

function remembered() {
  try {
    return localStorage.getItem(VOICE_KEY) || "";
  } catch (err) {
    return "";
  }
}

function remember(id) {
  try {
    if (id) localStorage.setItem(VOICE_KEY, id);
    else localStorage.removeItem(VOICE_KEY);
  } catch (err) {
    /* storage disabled: the choice lasts for this page only */
  }
}
