// The microphone level meter: -60..0 dBFS of the local track on a 0..100 bar.

export class MicMeter {
  constructor(ui) {
    this.ui = ui; // {level, fill}
    this.audioCtx = null;
    this.raf = 0;
  }

  start(stream) {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      const audioCtx = new Ctx();
      this.audioCtx = audioCtx;
      const source = audioCtx.createMediaStreamSource(stream);
      const analyser = audioCtx.createAnalyser();
      analyser.fftSize = 1024;
      analyser.smoothingTimeConstant = 0.3;
      source.connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      let shown = 0;
      const tick = () => {
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        const rms = Math.sqrt(sum / buf.length);
        // A quick attack and a slower release, so speech reads as a steady bar.
        const db = 20 * Math.log10(rms + 1e-9);
        const target = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
        shown = target > shown ? target : shown * 0.85 + target * 0.15;
        this.show(Math.round(shown));
        this.raf = requestAnimationFrame(tick);
      };
      if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
      this.raf = requestAnimationFrame(tick);
    } catch (err) {
      console.warn("mic level meter unavailable", err);
    }
  }

  stop() {
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
    if (this.audioCtx) this.audioCtx.close().catch(() => {});
    this.audioCtx = null;
    this.show(0);
  }

  show(pct) {
    this.ui.fill.style.transform = `scaleX(${pct / 100})`;
    this.ui.level.setAttribute("aria-valuenow", String(pct));
  }
}
