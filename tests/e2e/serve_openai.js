// The official `openai` SDK for node against `kdstep serve` (tests/e2e/serve_openai.sh runs it).
// usage: node serve_openai.js PORT MODEL TOOLS.json HELD.jsonl OUT_PREDICTIONS.jsonl
const fs = require("fs");
const mod = require("openai");
const OpenAI = mod.OpenAI || mod.default || mod;
const [port, model, toolsPath, heldPath, predPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "sk-kdstep-test", maxRetries: 0, timeout: 600000 });
const tools = JSON.parse(fs.readFileSync(toolsPath, "utf8"));
const held = fs.readFileSync(heldPath, "utf8").trim().split("\n").map((l) => JSON.parse(l));
let failed = 0;
function check(what, ok, detail) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok || !detail ? "" : ": " + detail}`);
  if (!ok) failed = 1;
}

async function streamed(req) {
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null;
  const calls = [];
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.content) text += c.delta.content;
    for (const tc of c.delta.tool_calls || []) {
      calls[tc.index] = calls[tc.index] || { name: "", arguments: "" };
      if (tc.function?.name) calls[tc.index].name += tc.function.name;
      if (tc.function?.arguments) calls[tc.index].arguments += tc.function.arguments;
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { text, calls, finish, usage };
}

(async () => {
  const models = await client.models.list();
  check("models.list names the served model", models.data.length === 1 && models.data[0].id === model, JSON.stringify(models.data));

  // chat with tools: tool_calls parsed, finish_reason tool_calls, predictions for `kdstep score`
  const preds = [];
  let withCalls = 0;
  for (const h of held) {
    const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: h.prompt }], tools, temperature: 0, max_tokens: 96 });
    const m = r.choices[0].message;
    const calls = (m.tool_calls || []).map((c) => ({ name: c.function.name, arguments: JSON.parse(c.function.arguments) }));
    if (calls.length) {
      withCalls++;
      if (r.choices[0].finish_reason !== "tool_calls") check(`${h.id}: finish_reason with tool_calls`, false, r.choices[0].finish_reason);
      if (!m.tool_calls.every((c) => c.type === "function" && typeof c.id === "string")) check(`${h.id}: tool_call objects`, false, JSON.stringify(m.tool_calls));
    }
    preds.push({ id: h.id, tool_calls: calls });
  }
  fs.writeFileSync(predPath, preds.map((p) => JSON.stringify(p)).join("\n") + "\n");
  check(`chat with tools: ${withCalls} of ${held.length} answers are tool_calls`, withCalls >= held.length / 2);

  // streaming returns the same as non-streaming (greedy): with tools, and plain chat
  for (const [i, h] of held.slice(0, 3).entries()) {
    for (const useTools of [true, false]) {
      const req = { model, messages: [{ role: "user", content: h.prompt }], temperature: 0, max_tokens: 64, ...(useTools ? { tools } : {}) };
      const whole = await client.chat.completions.create(req);
      const s = await streamed(req);
      const m = whole.choices[0].message;
      const wholeCalls = (m.tool_calls || []).map((c) => ({ name: c.function.name, arguments: c.function.arguments }));
      const same = s.text === (m.content || "") && JSON.stringify(s.calls) === JSON.stringify(wholeCalls) && s.finish === whole.choices[0].finish_reason &&
        s.usage && s.usage.completion_tokens === whole.usage.completion_tokens;
      check(`stream ${i} (${useTools ? "tools" : "no tools"}): same text, calls, finish_reason and usage as non-streaming`, same,
        JSON.stringify({ stream: s, whole: { text: m.content, calls: wholeCalls, finish: whole.choices[0].finish_reason, usage: whole.usage } }));
    }
  }

  // logprobs + top_logprobs on the generated tokens
  const lr = await client.chat.completions.create({ model, messages: [{ role: "user", content: held[0].prompt }], tools, temperature: 0, max_tokens: 24, logprobs: true, top_logprobs: 3 });
  const content = lr.choices[0].logprobs.content;
  const greedyTop = content.every((t) => t.top_logprobs.length === 3 && Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6 && t.logprob <= 0);
  check(`logprobs: ${content.length} tokens, each with 3 top_logprobs, greedy = the top one`, content.length > 0 && greedyTop);

  // vLLM's prompt_logprobs through completions (extra body parameter): top-k for every prompt token
  const prompt = `<|im_start|>user\n${held[0].prompt}<|im_end|>\n<|im_start|>assistant\n`;
  const k = 5;
  const cr = await client.completions.create({ model, prompt, max_tokens: 1, temperature: 0, prompt_logprobs: k });
  const plp = cr.choices[0].prompt_logprobs, ids = cr.choices[0].prompt_token_ids;
  let ok = Array.isArray(plp) && plp.length === cr.usage.prompt_tokens && plp[0] === null && ids.length === plp.length;
  for (let i = 1; ok && i < plp.length; i++) {
    const e = plp[i];
    const ranks = Object.values(e).map((v) => v.rank).sort((a, b) => a - b);
    ok = [1, 2, 3, 4, 5].every((r) => ranks.includes(r)) && String(ids[i]) in e && Object.values(e).every((v) => v.logprob <= 0 && typeof v.decoded_token === "string");
    if (!ok) console.log("  entry", i, JSON.stringify(e));
  }
  check(`prompt_logprobs: top-${k} and the actual token for each of ${plp ? plp.length - 1 : 0} prompt tokens after the first`, ok);
  const text = (plp || []).slice(1).map((e, i) => e[String(ids[i + 1])].decoded_token).join("");
  check("prompt_logprobs decoded tokens spell the prompt", prompt.endsWith(text) && text.length >= prompt.length - 12);

  // errors surface as the SDK's typed errors
  try {
    await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] });
    check("unknown model raises NotFoundError", false, "no error");
  } catch (e) {
    check("unknown model raises NotFoundError (404)", e.status === 404 && /does not exist/.test(e.message), `${e.status} ${e.message}`);
  }
  process.exit(failed);
})().catch((e) => {
  console.log("FAIL", e.stack || e);
  process.exit(1);
});
