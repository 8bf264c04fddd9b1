// A file: stream its transcript (stream=true SSE), then fetch the chosen format, and the
// subtitle files on demand. Every format comes from the API; nothing is formatted here.

import { readEvents, request } from "./api.js";
import { $, clearError, showError, status, text } from "./ui.js";

// The SSE deltas carry text only, no times, so progress is estimated from the text's length
// against the audio's duration at a typical speaking rate (~150 words a minute); it stops
// short of full until the done event.
const CHARS_PER_SECOND = 15;
const STREAMED = new Set(["json", "text"]); // the streamed text is already the whole answer

let run = null; // {file, options, results: Map(format → body), controller}

function options() {
  return {
    model: $("model").value,
    language: $("language").value.trim(),
    format: $("format").value,
    words: $("words").checked,
  };
}

function form(file, opts, format, stream) {
  const body = new FormData();
  body.append("file", file, file.name);
  if (opts.model) body.append("model", opts.model);
  if (opts.language) body.append("language", opts.language);
  body.append("response_format", format);
  if (format === "verbose_json" && opts.words) {
    body.append("timestamp_granularities[]", "word");
    body.append("timestamp_granularities[]", "segment");
  }
  if (stream) body.append("stream", "true");
  return body;
}

// The duration from the browser's own decoder (metadata only, not the whole file);
// null where the browser cannot read the container (the server still may).
function duration(file) {
  return new Promise((resolve) => {
    const audio = document.createElement("audio");
    const url = URL.createObjectURL(file);
    const done = (value) => {
      URL.revokeObjectURL(url);
      audio.removeAttribute("src");
      resolve(Number.isFinite(value) && value > 0 ? value : null);
    };
    audio.preload = "metadata";
    audio.addEventListener("loadedmetadata", () => done(audio.duration), { once: true });
    audio.addEventListener("error", () => done(null), { once: true });
    setTimeout(() => done(null), 5000);
    audio.src = url;
  });
}

function progress(value, note) {
  const bar = $("progress");
  if (value === null) bar.removeAttribute("value");
  else bar.value = value;
  $("progress-text").textContent = note;
}

function showResult(format, body) {
  const pretty = format === "verbose_json" ? JSON.stringify(JSON.parse(body), null, 2) : body;
  $("result-format").textContent = format;
  $("result").textContent = pretty;
  $("result").hidden = $("result-heading").hidden = false;
}

// `signal`: the run's, so a new file or a recording cancels it; a download has none (the run
// may have been cancelled since, and the file is still there).
async function fetchFormat(current, format, signal = undefined) {
  if (!current.results.has(format)) {
    const response = await request("/v1/audio/transcriptions", {
      method: "POST", body: form(current.file, current.options, format, false), signal,
    });
    current.results.set(format, await response.text());
  }
  return current.results.get(format);
}

export function hasFile() {
  return run !== null;
}

export function cancelFile() {
  if (run) run.controller.abort();
}

export async function transcribeFile(file) {
  cancelFile();
  const current = { file, options: options(), results: new Map(), controller: new AbortController() };
  run = current;
  clearError();
  text.clear();
  $("result").hidden = $("result-heading").hidden = true;
  progress(0, "");
  status(`Transcribing ${file.name}…`);
  const seconds = await duration(file);
  const started = performance.now();
  let chars = 0;
  try {
    const response = await request("/v1/audio/transcriptions", {
      method: "POST", body: form(file, current.options, "json", true), signal: current.controller.signal,
    });
    await readEvents(response, (event) => {
      if (event.type === "transcript.text.delta") {
        text.appendFinal(event.delta);
        chars += event.delta.length;
        if (seconds) {
          const share = Math.min(0.95, chars / (seconds * CHARS_PER_SECOND));
          progress(share,
                   `≈ ${Math.round(share * 100)} % of ${seconds.toFixed(1)} s (estimated from the text so far)`);
        } else {
          progress(null, "");
        }
      } else if (event.type === "transcript.text.done") {
        $("transcript").textContent = event.text; // the whole text, as the server joined it
      }
    });
    const took = (performance.now() - started) / 1000;
    progress(1, seconds ? `${seconds.toFixed(1)} s of audio in ${took.toFixed(1)} s` : `done in ${took.toFixed(1)} s`);
    current.results.set("text", text.final() + "\n");
    if (!STREAMED.has(current.options.format)) {
      status(`Fetching ${current.options.format}…`);
      showResult(current.options.format,
                 await fetchFormat(current, current.options.format, current.controller.signal));
    }
    if (run === current) status(`Done: ${file.name}`);
  } catch (err) {
    if (err.name === "AbortError") return;
    if (run === current) {
      progress(0, "");
      status(`Failed: ${file.name}`);
      showError(err);
    }
  }
}

// .txt, .srt, .vtt of the last file, as the API writes them.
export async function downloadFile(format) {
  const current = run;
  if (!current) return;
  clearError();
  try {
    status(`Preparing ${format}…`);
    const body = await fetchFormat(current, format);
    const ext = format === "text" ? "txt" : format;
    save(new Blob([body], { type: "text/plain" }), `${current.file.name.replace(/\.[^.]+$/, "")}.${ext}`);
    status(`Saved ${format}`);
  } catch (err) {
    showError(err);
  }
}

export function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
