// The microphone: getUserMedia → AudioWorklet (24 kHz pcm16) → the Realtime WebSocket
// (`/v1/realtime?intent=transcription`, GA events) → partial and final words on the page.

import { ApiError, getJSON, realtimeSocket } from "./api.js";
import { clearError, showError, status, text } from "./ui.js";

const STOP_WAIT_MS = 15000; // after Stop, how long the last words may take to come back

// getUserMedia's refusals, in words a person can act on.
function microphoneError(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The microphone was refused: allow it for this page (the icon in the address bar), " +
        "then press Record again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone found: connect one (or enable it in the system settings), then press Record again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone cannot be read: another program may be using it.";
    default:
      return `The microphone could not be opened: ${err && err.message ? err.message : err}`;
  }
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function sessionUpdate(model, language) {
  const transcription = { model: model || "whisper-1" };
  if (language) transcription.language = language;
  return {
    type: "session.update",
    session: {
      type: "transcription",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: 24000 },
          transcription,
          turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
        },
      },
    },
  };
}

// A WebSocket refused at the handshake (a wrong key, a foreign page) tells the page nothing;
// the same refusal from an ordinary request has the API's message.
async function whyRefused() {
  try {
    await getJSON("/v1/models");
  } catch (err) {
    if (err instanceof ApiError) return err.message;
  }
  return "The live connection to /v1/realtime was refused or lost (does this server have the Realtime endpoint?).";
}

export class Microphone {
  constructor({ onState }) {
    this.onState = onState; // (recording: bool) → void
    this.active = false;
  }

  async start({ model, language }) {
    if (this.active) return;
    this.active = true;
    this.onState(true);
    clearError();
    text.clear();
    this.partials = new Map(); // item_id → text so far
    this.pending = new Set(); // items committed whose final text has not come yet
    this.speaking = false;
    this.opened = false;
    this.lastError = null;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return this.fail("This browser offers no microphone to this page: open it as http://localhost or over https.");
    }
    try {
      // The socket and the worklet first: a refused key is said before the microphone is
      // asked for, and no speech is lost while they start.
      status("Connecting…");
      await this.openSocket(model, language);
      await this.startAudio();
    } catch (err) {
      if (!this.active) return undefined; // Stop pressed while connecting: nothing went wrong
      return this.fail(err instanceof ApiError || typeof err === "string" ? err : `Recording failed: ${err.message}`);
    }
    if (!this.active) return this.teardown();
    status("Asking for the microphone…");
    try {
      // No echo cancelling, noise suppression or gain control: tuned for calls, they change
      // the sound Whisper was trained on.
      this.media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      if (!this.active) return undefined;
      return this.fail(microphoneError(err));
    }
    if (!this.active) return this.teardown();
    this.context.createMediaStreamSource(this.media).connect(this.node);
    status("Listening… speak, then press Stop.");
  }

  openSocket(model, language) {
    return new Promise((resolve, reject) => {
      const ws = realtimeSocket();
      this.ws = ws;
      ws.onopen = () => {
        this.opened = true;
        ws.send(JSON.stringify(sessionUpdate(model, language)));
        resolve();
      };
      ws.onmessage = (event) => this.onEvent(JSON.parse(event.data));
      ws.onclose = async (event) => {
        const expected = !this.active || this.closing;
        this.ws = null;
        if (!this.opened) {
          reject(new ApiError(await whyRefused()));
        } else if (!expected) {
          // The server says why in an `error` event before it closes; keep those words.
          this.fail(this.lastError || event.reason || "The live connection closed unexpectedly.");
        }
        if (this.closed) this.closed();
      };
    });
  }

  async startAudio() {
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("/page/audio-worklet.js");
    // No outputs: nothing is played back, and Chromium still runs a node without outputs.
    this.node = new AudioWorkletNode(this.context, "pcm16-24k", { numberOfInputs: 1, numberOfOutputs: 0 });
    this.node.port.onmessage = (event) => {
      if (event.data.pcm && this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(event.data.pcm) }));
      } else if (event.data.flushed && this.flushed) {
        this.flushed();
      }
    };
    await this.context.resume();
  }

  onEvent(event) {
    switch (event.type) {
      case "input_audio_buffer.speech_started":
        this.speaking = true;
        status("Hearing speech…");
        break;
      case "input_audio_buffer.speech_stopped":
        this.speaking = false;
        break;
      case "input_audio_buffer.committed":
        this.speaking = false;
        this.pending.add(event.item_id);
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const so_far = (this.partials.get(event.item_id) || "") + event.delta;
        this.partials.set(event.item_id, so_far);
        this.renderPartial();
        break;
      }
      case "conversation.item.input_audio_transcription.completed":
        this.partials.delete(event.item_id);
        this.pending.delete(event.item_id);
        if (event.transcript) text.appendFinal(event.transcript);
        this.renderPartial();
        if (this.active && !this.closing) status("Listening…");
        this.settled();
        break;
      case "conversation.item.input_audio_transcription.failed":
        this.partials.delete(event.item_id);
        this.pending.delete(event.item_id);
        this.renderPartial();
        showError((event.error && event.error.message) || "The transcription of an utterance failed.");
        this.settled();
        break;
      case "error":
        this.lastError = (event.error && event.error.message) || "The live connection reported an error.";
        showError(this.lastError);
        this.settled();
        break;
      default:
        break; // session.created/updated, conversation.item.added/done…: nothing to show
    }
  }

  renderPartial() {
    text.setPartial([...this.partials.values()].join(" "));
  }

  settled() {
    if (this.closing && this.pending.size === 0 && this.partials.size === 0 && this.whenSettled) this.whenSettled();
  }

  // Stop: the last audio out of the worklet, a commit if speech is still open, the last
  // words back, then close.
  async stop() {
    if (!this.active || this.closing) return;
    this.closing = true;
    status("Finishing…");
    if (this.media) this.media.getTracks().forEach((t) => t.stop());
    if (this.node) {
      await Promise.race([new Promise((r) => { this.flushed = r; this.node.port.postMessage("flush"); }),
                          new Promise((r) => setTimeout(r, 500))]);
    }
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      if (this.speaking || this.partials.size > 0) ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
      if (this.speaking || this.partials.size > 0 || this.pending.size > 0) {
        await Promise.race([new Promise((r) => { this.whenSettled = r; }),
                            new Promise((r) => setTimeout(r, STOP_WAIT_MS))]);
      }
      await Promise.race([new Promise((r) => { this.closed = r; ws.close(1000, "stopped"); }),
                          new Promise((r) => setTimeout(r, 3000))]);
    }
    // Whatever never settled stays readable, as the partial text it was.
    const left = [...this.partials.values()].join(" ");
    if (left) text.appendFinal(left);
    text.setPartial("");
    this.teardown();
    status("Stopped.");
  }

  fail(message) {
    showError(message);
    status("Not recording.");
    this.teardown();
  }

  teardown() {
    if (this.media) this.media.getTracks().forEach((t) => t.stop());
    if (this.node) this.node.port.onmessage = null;
    if (this.context) this.context.close().catch(() => {});
    if (this.ws) {
      this.closing = true;
      this.ws.close();
    }
    this.media = this.node = this.context = this.ws = null;
    this.flushed = this.whenSettled = this.closed = null;
    this.active = this.closing = false;
    this.onState(false);
  }
}
