// Stream a chat completion with fetch(), as a browser page would (also runs in Node >= 18).
// Browsers: paste into a module script served from the same origin as tokenwire.
const url = (globalThis.process?.env.TOKENWIRE_URL ?? "http://127.0.0.1:8000") + "/v1/chat/completions";
const model = globalThis.process?.env.TOKENWIRE_MODEL ?? "smollm2-135m-instruct-int8";

const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json", accept: "application/x-ndjson" },
  body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "Name the capital city of France." }] }),
});
if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);

// NDJSON: one JSON payload per line; the decoder keeps multi-byte characters whole.
const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
let buffered = "";
let text = "";
for (;;) {
  const { value, done } = await reader.read();
  if (done) break;
  buffered += value;
  const lines = buffered.split("\n");
  buffered = lines.pop();
  for (const line of lines.filter(Boolean)) {
    const delta = JSON.parse(line).choices?.[0]?.delta?.content ?? "";
    text += delta;
    globalThis.process?.stdout.write(delta);
  }
}
globalThis.process?.stdout.write("\n");
export default text;
