// The server line in the top bar, from GET /health: ready, loading or unreachable,
// and the backends it runs. Rechecks until the server is ready.

const RETRY_MS = 5000;

export class ServerStatus {
  constructor(ui) {
    this.ui = ui; // {dot, text, backends}
    this.timer = 0;
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), ms);
  }

  async check() {
    clearTimeout(this.timer);
    let health;
    try {
      const resp = await fetch("/health", { cache: "no-store" });
      health = await resp.json();
    } catch (err) {
      this.ui.dot.dataset.state = "down";
      this.ui.text.textContent = "Server unreachable";
      this.ui.backends.textContent = "";
      this.schedule(RETRY_MS);
      return;
    }
    const ready = !!(health && health.ready);
    this.ui.dot.dataset.state = ready ? "up" : "loading";
    this.ui.text.textContent = ready ? "Server ready" : "Server starting (loading models)…";
    const b = (health && health.backends) || {};
    this.ui.backends.textContent = ["vad", "stt", "llm", "tts"]
      .filter((k) => b[k])
      .map((k) => `${k.toUpperCase()}: ${b[k]}`)
      .join(" · ");
    if (!ready) this.schedule(RETRY_MS);
  }
}
