// The page's entry module: wires the controls to the file, microphone and service modules.

import { apiKey, setApiKey } from "./api.js";
import { cancelFile, downloadFile, hasFile, save, transcribeFile } from "./file.js";
import { Microphone } from "./mic.js";
import { fetchModels, refresh, REFRESH_MS } from "./service.js";
import { $, clearError, showError, status, text } from "./ui.js";

let chosen = null; // the last file picked or dropped
let source = null; // "file" | "mic": what the transcript on the page came from

function setOutputButtons() {
  const any = text.final().length > 0;
  $("copy").disabled = !any;
  $("download-txt").disabled = !any;
  const fromFile = source === "file" && hasFile() && any;
  $("download-srt").disabled = $("download-vtt").disabled = !fromFile;
}

async function start(file) {
  chosen = file;
  source = "file";
  $("transcribe").disabled = false;
  setTimeout(refresh, 1000); // the lanes at work, without waiting for the next tick
  await transcribeFile(file);
  setOutputButtons();
}

const mic = new Microphone({
  onState(recording) {
    $("record").disabled = recording;
    $("record").classList.toggle("on", recording);
    $("stop").disabled = !recording;
    $("file").disabled = $("transcribe").disabled = recording;
    if (!recording) {
      $("transcribe").disabled = chosen === null;
      setOutputButtons();
      $("record").focus();
    } else {
      $("stop").focus(); // keyboard users land on the button they need next
    }
  },
});

// --- the key -----------------------------------------------------------------------------

function showKeyState() {
  $("key-state").textContent = apiKey() ? "key set for this tab" : "no key (kept for this tab only when set)";
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setApiKey($("key").value.trim());
  $("key").value = "";
  showKeyState();
  clearError();
  try {
    await fetchModels();
    status("Key saved.");
  } catch (err) {
    showError(err);
  }
  refresh();
});

$("key-forget").addEventListener("click", () => {
  setApiKey("");
  showKeyState();
  status("Key forgotten.");
  refresh();
});

// --- a file ------------------------------------------------------------------------------

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) start(file);
});

const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) start(file);
});
// A file dropped next to the zone must not navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

$("transcribe").addEventListener("click", () => chosen && start(chosen));

$("format").addEventListener("change", () => {
  $("words").disabled = $("format").value !== "verbose_json";
});

// --- the microphone ----------------------------------------------------------------------

$("record").addEventListener("click", () => {
  cancelFile();
  source = "mic";
  mic.start({ model: $("model").value, language: $("language").value.trim() });
});

$("stop").addEventListener("click", () => mic.stop());

// --- the transcript ----------------------------------------------------------------------

$("copy").addEventListener("click", async () => {
  const value = text.final();
  try {
    await navigator.clipboard.writeText(value);
    status("Copied.");
  } catch {
    // Outside a secure context there is no clipboard API: select the text for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents($("transcript"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    status("Selected: press Ctrl+C to copy.");
  }
});

$("download-txt").addEventListener("click", () => {
  if (source === "file") downloadFile("text");
  else save(new Blob([text.final() + "\n"], { type: "text/plain" }), "recording.txt");
});
$("download-srt").addEventListener("click", () => downloadFile("srt"));
$("download-vtt").addEventListener("click", () => downloadFile("vtt"));

// --- start -------------------------------------------------------------------------------

async function boot() {
  showKeyState();
  try {
    await fetchModels();
    status("Ready: drop a file, or press Record.");
  } catch (err) {
    showError(err);
    if (err.code === "invalid_api_key") {
      status("This server needs its API key: type it above.");
      $("key").focus();
    } else {
      status("Not ready.");
    }
  }
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

boot();
