// The latency table: one row per turn, one column per stage, voice-to-voice first.

import { fmtMs } from "/static/shared/format.js";
import { orderStages, stageLabel, V2V_KEY, V2V_TITLE } from "/static/shared/timings.js";

export class LatencyTable {
  constructor(ui) {
    this.ui = ui; // {head, body, empty}
    this.byTurn = new Map(); // turn -> {stage: ms}
  }

  clear() {
    this.byTurn.clear();
    this.render();
  }

  // Merges a turn's timings (they may come in several events); returns them all.
  add(turn, timings) {
    const merged = Object.assign({}, this.byTurn.get(turn), timings);
    this.byTurn.set(turn, merged);
    this.render();
    return merged;
  }

  render() {
    const keys = new Set();
    for (const timings of this.byTurn.values()) for (const k of Object.keys(timings)) keys.add(k);
    const stages = orderStages(keys);
    const columns = stages.includes(V2V_KEY) ? [V2V_KEY, ...stages.filter((k) => k !== V2V_KEY)] : stages;

    const head = document.createDocumentFragment();
    head.appendChild(cell("th", "Turn", { scope: "col" }));
    for (const k of columns) {
      const v2v = k === V2V_KEY;
      head.appendChild(cell("th", stageLabel(k), { scope: "col", title: v2v ? V2V_TITLE : k, className: v2v ? "v2v" : "" }));
    }
    this.ui.head.replaceChildren(head);

    const body = document.createDocumentFragment();
    const turns = [...this.byTurn.keys()].sort((a, b) => a - b);
    for (const turn of turns) {
      const timings = this.byTurn.get(turn);
      const tr = document.createElement("tr");
      tr.appendChild(cell("th", String(turn), { scope: "row" }));
      for (const k of columns) {
        const text = k in timings ? fmtMs(timings[k]) : "—";
        tr.appendChild(cell("td", text, { className: k === V2V_KEY ? "v2v" : "" }));
      }
      body.appendChild(tr);
    }
    this.ui.body.replaceChildren(body);
    this.ui.empty.hidden = turns.length > 0;
  }
}

function cell(tag, text, props) {
  const node = document.createElement(tag);
  node.textContent = text;
  for (const [key, value] of Object.entries(props)) if (value) node[key] = value;
  return node;
}
