// The transcript: one <li> per turn, the user's bubble then the agent's, in turn
// order even when messages arrive out of order.

export class Transcript {
  constructor(ui) {
    this.ui = ui; // {list, empty}
    this.turns = new Map(); // turn -> {li, userEl, userTextEl, agentEl, agentTextEl, agentText, v2vEl}
  }

  clear() {
    this.turns.clear();
    this.ui.list.replaceChildren();
    this.ui.empty.hidden = false;
  }

  // typed: the user typed the words (a "typed" badge), not said them.
  setUserText(turn, text, typed = false) {
    const t = this.turn(turn);
    if (!t.userEl) {
      const b = bubble("user");
      t.userEl = b.div;
      t.userTextEl = b.text;
      t.li.insertBefore(b.div, t.li.firstChild);
    }
    t.userTextEl.textContent = text;
    if (typed && !t.userEl.querySelector(".badge-typed")) {
      const badge = document.createElement("span");
      badge.className = "badge badge-typed";
      badge.textContent = "typed";
      t.userEl.querySelector(".who").after(badge);
    }
    this.scroll();
  }

  // Chunks arrive as they start playing; join them with a space unless punctuation follows.
  appendAgentText(turn, chunk) {
    const t = this.agentBubble(turn);
    const needsSpace = t.agentText && !/\s$/.test(t.agentText) && !/^[\s.,!?;:]/.test(chunk);
    t.agentText += (needsSpace ? " " : "") + chunk;
    t.agentTextEl.textContent = t.agentText;
    t.agentEl.classList.add("live");
    this.scroll();
  }

  // turn_end: an interrupted reply shows only what was spoken, the full reply in a tooltip.
  endTurn({ turn, interrupted, spoken_text: spoken, reply_text: reply }) {
    const t = this.turn(turn);
    if (interrupted) {
      this.agentBubble(turn);
      t.agentText = spoken || "";
      t.agentTextEl.textContent = t.agentText;
      t.agentEl.classList.add("interrupted");
      if (!t.agentEl.querySelector(".badge-interrupted")) {
        const badge = document.createElement("span");
        badge.className = "badge badge-interrupted";
        badge.textContent = "interrupted";
        badge.title = reply ? `Full reply: ${reply}` : "Interrupted";
        t.agentEl.querySelector(".who").after(badge);
      }
    } else if (!t.agentText && (spoken || reply)) {
      this.agentBubble(turn);
      t.agentText = spoken || reply;
      t.agentTextEl.textContent = t.agentText;
    }
    if (t.agentEl) t.agentEl.classList.remove("live");
    this.scroll();
  }

  setVoiceToVoice(turn, text) {
    const t = this.agentBubble(turn);
    if (!t.v2vEl) {
      t.v2vEl = document.createElement("span");
      t.v2vEl.className = "badge badge-v2v";
      t.agentEl.appendChild(t.v2vEl);
    }
    t.v2vEl.textContent = text;
  }

  turn(turn) {
    let t = this.turns.get(turn);
    if (t) return t;
    const li = document.createElement("li");
    li.className = "turn";
    li.dataset.turn = String(turn);
    t = { li, userEl: null, userTextEl: null, agentEl: null, agentTextEl: null, agentText: "", v2vEl: null };
    this.turns.set(turn, t);
    const before = [...this.ui.list.children].find((child) => Number(child.dataset.turn) > turn);
    this.ui.list.insertBefore(li, before || null);
    this.ui.empty.hidden = true;
    return t;
  }

  agentBubble(turn) {
    const t = this.turn(turn);
    if (!t.agentEl) {
      const b = bubble("agent");
      t.agentEl = b.div;
      t.agentTextEl = b.text;
      t.li.appendChild(b.div);
    }
    return t;
  }

  scroll() {
    const last = this.ui.list.lastElementChild;
    if (last && last.scrollIntoView) last.scrollIntoView({ block: "nearest" });
  }
}

function bubble(who) {
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
