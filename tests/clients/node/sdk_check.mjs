// The official openai Node SDK against whisperd: each call's outcome as one JSON object on stdout.
// Usage: node sdk_check.mjs BASE_URL FIXTURES_DIR   (tests/test_node_sdk.py asserts on the output)
import fs from "node:fs";
import path from "node:path";
import OpenAI, { toFile } from "openai";

const [baseURL, fixtures] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
const file = (name) => fs.createReadStream(path.join(fixtures, name));
const results = {};

async function record(name, call) {
  try {
    results[name] = { ok: await call() };
  } catch (e) {
    results[name] = { status: e.status ?? null, error: e.error ?? null, message: String(e.message) };
  }
}

await record("json", () => client.audio.transcriptions.create({ file: file("fox.wav"), model: "whisper-1" }));
await record("text", () => client.audio.transcriptions.create(
  { file: file("fox.mp3"), model: "whisper-1", response_format: "text" }));
await record("srt", () => client.audio.transcriptions.create(
  { file: file("fox.ogg"), model: "whisper-1", response_format: "srt" }));
await record("verbose", async () => client.audio.transcriptions.create({
  file: await toFile(fs.readFileSync(path.join(fixtures, "fox.webm")), "recording.webm"),
  model: "gpt-4o-mini-transcribe", response_format: "verbose_json", timestamp_granularities: ["word", "segment"],
}));
await record("translation", () => client.audio.translations.create(
  { file: file("spanish.flac"), model: "base", prompt: "Hello, my name is" }));
await record("models", async () => (await client.models.list()).data.map((m) => m.id));
await record("not_audio", async () => client.audio.transcriptions.create(
  { file: await toFile(Buffer.from("this is not audio"), "x.wav"), model: "whisper-1" }));
await record("bad_temperature", () => client.audio.transcriptions.create(
  { file: file("fox.wav"), model: "whisper-1", temperature: 3 }));
await record("stream", async () => {
  const events = [];
  const stream = await client.audio.transcriptions.create({ file: file("long.mp3"), model: "whisper-1", stream: true });
  for await (const event of stream) events.push(event);
  return events;
});
process.stdout.write(JSON.stringify(results));
