// Vercel AI SDK clients against a tokenwire server, one scenario per run:
//   node clients.mjs SCENARIO PROVIDER BASE_URL MODEL
// SCENARIO: stream-tool (streamText with a tool the model must call) or generate-object
// (generateObject with a zod schema). PROVIDER: openai (the Chat Completions provider,
// `.chat()`), openai-responses (the default `openai(model)`, which speaks the Responses API)
// or anthropic. Prints one JSON line with what the SDK made of the stream.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, streamText, tool } from "ai";
import { z } from "zod";

const [scenario, provider, baseURL, modelId] = process.argv.slice(2);

function model() {
  if (provider === "openai") {
    return createOpenAI({ baseURL, apiKey: "unused" }).chat(modelId);
  }
  if (provider === "openai-responses") {
    return createOpenAI({ baseURL, apiKey: "unused" })(modelId);
  }
  if (provider === "anthropic") {
    return createAnthropic({ baseURL, apiKey: "unused" })(modelId);
  }
  throw new Error(`unknown provider ${provider}`);
}

const weather = tool({
  description: "The current weather in a city.",
  inputSchema: z.object({
    city: z.string().describe("The city's name"),
    unit: z.enum(["celsius", "fahrenheit"]),
  }),
});

async function streamTool() {
  const result = streamText({
    model: model(),
    prompt: "What is the weather in Paris? Use get_weather.",
    tools: { get_weather: weather },
    toolChoice: "required",
    maxRetries: 0,
  });
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part.type);
  }
  const toolCalls = (await result.toolCalls).map((call) => ({
    toolName: call.toolName,
    input: call.input,
  }));
  return { parts, toolCalls, finishReason: await result.finishReason };
}

async function generate() {
  const { object, finishReason } = await generateObject({
    model: model(),
    schema: z.object({
      name: z.string(),
      age: z.number().int().min(0),
      tags: z.array(z.string()),
    }),
    prompt: "Invent a person.",
    maxRetries: 0,
  });
  return { object, finishReason };
}

const run = { "stream-tool": streamTool, "generate-object": generate }[scenario];
if (!run) throw new Error(`unknown scenario ${scenario}`);
console.log(JSON.stringify(await run()));
