// AudioWorklet processor: the microphone at the context's rate (often 48 kHz, or 44.1 kHz)
// → mono 24 kHz pcm16, posted to the page in 100 ms chunks for input_audio_buffer.append.
//
// Resampling is a windowed-sinc low-pass interpolator (Blackman window, 16 zero crossings a
// side, cut-off 0.92 × the lower Nyquist): dropping every other sample of 48 kHz would fold
// 12–24 kHz noise back onto speech. The kernel is tabulated at 512 phases between input samples
// and interpolated linearly, so any ratio (44.1 → 24 kHz included) costs one lookup a tap.

const TARGET_RATE = 24000;
const CHUNK = 2400; // 100 ms at 24 kHz
const ZEROS = 16;
const PHASES = 512;
const GUARD = 0.92;

function blackman(u) {
  return Math.abs(u) >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * u) + 0.08 * Math.cos(2 * Math.PI * u);
}

class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.pass = Math.abs(this.step - 1) < 1e-9;
    const fc = 0.5 * Math.min(1, outRate / inRate) * GUARD; // cycles per input sample
    this.half = Math.ceil(ZEROS / (2 * fc)); // taps each side, in input samples
    // table[i] = h(i / PHASES) for distances 0 … half (the kernel is symmetric).
    const n = this.half * PHASES + 2;
    this.table = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const d = i / PHASES;
      const x = 2 * fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      this.table[i] = 2 * fc * sinc * blackman(d / this.half);
    }
    this.buf = new Float32Array(0); // input not yet fully used
    this.pos = 0; // where the next output sample falls in buf, in input samples
    if (!this.pass) this.buf = new Float32Array(this.half); // start on zeros: no click, no gap
    if (!this.pass) this.pos = this.half;
  }

  kernel(d) {
    const f = Math.abs(d) * PHASES;
    const i = Math.floor(f);
    return this.table[i] + (this.table[i + 1] - this.table[i]) * (f - i);
  }

  // Float32 input → Float32 output samples at the target rate.
  push(input) {
    if (this.pass) return input.slice();
    const buf = new Float32Array(this.buf.length + input.length);
    buf.set(this.buf);
    buf.set(input, this.buf.length);
    const out = [];
    const half = this.half;
    while (this.pos + half < buf.length) {
      const centre = Math.floor(this.pos);
      let acc = 0;
      let weight = 0;
      for (let k = centre - half + 1; k <= centre + half; k++) {
        const d = this.pos - k;
        if (Math.abs(d) >= half) continue;
        const h = this.kernel(d);
        acc += buf[k] * h;
        weight += h;
      }
      out.push(weight ? acc / weight : 0); // unity gain at DC however the taps fall
      this.pos += this.step;
    }
    const keep = Math.max(0, Math.floor(this.pos) - half); // the oldest sample still needed
    this.buf = buf.slice(keep);
    this.pos -= keep;
    return Float32Array.from(out);
  }
}

class Pcm16Processor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, TARGET_RATE); // sampleRate: the context's, a global here
    this.chunk = new Int16Array(CHUNK);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.send();
        this.port.postMessage({ flushed: true });
      }
    };
  }

  send() {
    if (!this.filled) return;
    const pcm = this.chunk.slice(0, this.filled);
    this.port.postMessage({ pcm: pcm.buffer }, [pcm.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    let mono = channels[0];
    if (channels.length > 1) {
      mono = new Float32Array(channels[0].length);
      for (const ch of channels) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / channels.length;
    }
    for (const s of this.resampler.push(mono)) {
      const clipped = Math.max(-1, Math.min(1, s));
      this.chunk[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      if (this.filled === CHUNK) this.send();
    }
    return true; // keep running until the page disconnects the node
  }
}

registerProcessor("pcm16-24k", Pcm16Processor);
