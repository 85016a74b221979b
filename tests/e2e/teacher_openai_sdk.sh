#!/usr/bin/env bash
# A real client against `kdstep teacher serve` (issue 16): the official `openai` SDK for node, installed
# from npm into tests/.cache (once), calls the stub server as it would call vLLM.
#  - chat with tools and logprobs/top_logprobs: a Hermes tool call comes back as message.tool_calls;
#  - vLLM's extra body {prompt_logprobs: 5} (the node SDK passes body keys it does not know through,
#    as the Python SDK's extra_body does) over a whole conversation with add_generation_prompt false:
#    the answer's prompt_logprobs, one entry per prompt token, the first null, ranks 1..5 in each, the
#    prompt token's own entry in each (found by vLLM's return_token_ids), spelling the conversation;
#  - chat_template_kwargs {enable_thinking: true}: the answer starts with a <think> block;
#  - return_tokens_as_token_ids: logprob tokens read "token_id:N";
#  - /v1/completions with prompt_logprobs (choices[0].prompt_logprobs).
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
command -v npm >/dev/null && command -v node >/dev/null || { echo "skip: node/npm missing (apt-get install nodejs npm)"; exit 77; }
sdk="$KD_SOURCE_DIR/tests/.cache/node-openai"
if [[ ! -d "$sdk/node_modules/openai" ]]; then
  mkdir -p "$sdk"
  (cd "$sdk" && npm install --silent --no-audit --no-fund openai@4 >/dev/null 2>&1) \
    || { echo "skip: npm install openai failed (no registry?)"; exit 77; }
fi
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d)
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$KDSTEP" teacher serve --port 0 --tokenizer "$tok" --tools "$KD_SOURCE_DIR/configs/tools.json" --duration 300 \
  >"$tmp/port" 2>"$tmp/server.log" &
server=$!
for _ in $(seq 300); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
port=$(grep -o '[0-9]\+' "$tmp/port" | tail -n 1)
[[ -n "$port" ]] || { echo "server did not start"; cat "$tmp/server.log"; exit 1; }
cat >"$tmp/client.js" <<'JS'
const OpenAI = require(process.env.SDK + "/node_modules/openai");
const assert = require("assert");
const client = new OpenAI({ baseURL: `http://127.0.0.1:${process.env.PORT}/v1`, apiKey: "test-key" });
const tools = [{ type: "function", function: { name: "get_weather", description: "Current weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
(async () => {
  const user = { role: "user", content: "What is the weather in Paris?" };
  const r1 = await client.chat.completions.create({ model: "stub-teacher", messages: [user], tools,
    logprobs: true, top_logprobs: 3 });
  const call = r1.choices[0].message.tool_calls[0];
  assert.strictEqual(call.function.name, "get_weather");
  assert.strictEqual(JSON.parse(call.function.arguments).city, "Paris");
  assert.ok(r1.choices[0].logprobs.content.length > 0 && r1.choices[0].logprobs.content[0].top_logprobs.length === 3);
  const conv = [user, { role: "assistant", content: "", tool_calls: [call] },
    { role: "tool", tool_call_id: call.id, content: '{"temperature": 21}' },
    { role: "assistant", content: "It is 21 degrees in Paris." }];
  const r2 = await client.chat.completions.create({ model: "stub-teacher", messages: conv, tools, max_tokens: 1,
    add_generation_prompt: false, prompt_logprobs: 5, return_token_ids: true });
  const plp = r2.prompt_logprobs;
  assert.ok(Array.isArray(plp) && plp.length === r2.usage.prompt_tokens, "one entry per prompt token");
  assert.strictEqual(plp[0], null);
  let text = "";
  const ids = r2.prompt_token_ids;
  assert.ok(Array.isArray(ids) && ids.length === plp.length);
  for (let i = 1; i < plp.length; i++) {
    const e = plp[i];
    const entries = Object.entries(e);
    const ranks = entries.map(([, v]) => v.rank).filter((r) => r <= 5).sort((a, b) => a - b);
    assert.deepStrictEqual(ranks, [1, 2, 3, 4, 5]);
    for (const [id, v] of entries) assert.ok(/^\d+$/.test(id) && v.logprob <= 0 && typeof v.decoded_token === "string");
    text += e[String(ids[i])].decoded_token; // the prompt token's own entry is always there
  }
  assert.ok(text.includes('"name": "get_weather"') && text.endsWith("It is 21 degrees in Paris.<|im_end|>\n"), text.slice(-80));
  const r3 = await client.chat.completions.create({ model: "stub-teacher", messages: [user], tools,
    chat_template_kwargs: { enable_thinking: true } });
  assert.ok((r3.choices[0].message.content || "").startsWith("<think>\n"), "a think block first");
  const r4 = await client.chat.completions.create({ model: "stub-teacher", messages: [user], tools, logprobs: true,
    top_logprobs: 2, return_tokens_as_token_ids: true });
  assert.ok(r4.choices[0].logprobs.content.every((t) => /^token_id:\d+$/.test(t.token)));
  const r5 = await client.completions.create({ model: "stub-teacher", prompt: "<|im_start|>user\nhello<|im_end|>\n",
    max_tokens: 1, prompt_logprobs: 5 });
  assert.ok(r5.choices[0].prompt_logprobs.length > 3 && r5.choices[0].prompt_logprobs[0] === null);
  const ver = require(process.env.SDK + "/node_modules/openai/package.json").version;
  console.log(`openai-node ${ver}: tool call ${call.function.name}(${call.function.arguments}); ` +
    `prompt_logprobs over ${plp.length} tokens of the conversation; thinking, token ids and /v1/completions read`);
})().catch((e) => { console.error(e); process.exit(1); });
JS
SDK="$sdk" PORT="$port" node "$tmp/client.js"
