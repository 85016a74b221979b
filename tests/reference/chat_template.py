#!/usr/bin/python3
"""Oracle for kdstep's chat rendering: Qwen3's own chat_template rendered by Jinja2 exactly as
transformers' apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception global).

  chat_template.py gen N            deterministic test conversations, one JSON per line
  chat_template.py render CONFIG CONV.jsonl   Jinja renderings, one JSON string per line
  chat_template.py check CONFIG CONV.jsonl KDSTEP_OUT.jsonl   compare text + check spans
"""
import functools
import json
import random
import sys

UNICODE = ["héllo wörld", "日本語のテキスト", "Привет, мир", "مرحبا بالعالم", "नमस्ते दुनिया", "emoji 👩‍👩‍👧 ok 🎉",
           "e\u0301 combining", "tab\tand\nnewline", "quote \" and backslash \\", "line\r\nCRLF", "  spaces  ",
           "\u2028sep\u0007bell", "中文 and English 混合", "", "ẞ ß Σσς"]
WORDS = ("please check the weather in Paris tomorrow and then send an email to my manager about "
         "the quarterly report read the file named notes txt compute the sum of these numbers "
         "search the web for recent news schedule a meeting at noon").split()
FLOATS = [1.5, 0.1, 1e-7, 1e20, 3.0, -2.25, 123456789.123, 1e16, 1234567890123456.0, 0.0001, 0.00001, 2.5e-300]


def sentence(r):
    s = " ".join(r.choice(WORDS) for _ in range(r.randint(1, 12)))
    if r.random() < 0.4:
        s += " " + r.choice(UNICODE)
    return s


def value(r, depth=0):
    k = r.randrange(9 if depth < 2 else 6)
    if k == 0: return sentence(r)
    if k == 1: return r.randint(-10**12, 10**12)
    if k == 2: return r.choice(FLOATS)
    if k == 3: return r.choice([True, False, None])
    if k == 4: return r.choice(UNICODE)
    if k == 5: return r.randint(0, 100)
    if k == 6: return [value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {r.choice(WORDS) + str(i): value(r, depth + 1) for i in range(r.randint(0, 3))}


def tool_call(r, tools):
    name = r.choice(tools)["function"]["name"] if tools and r.random() < 0.8 else r.choice(WORDS) + "_tool"
    args = {r.choice(WORDS) + str(i): value(r) for i in range(r.randint(0, 4))}
    if r.random() < 0.3:
        args = json.dumps(args, ensure_ascii=r.random() < 0.5, separators=r.choice([None, (",", ":")]))
    if r.random() < 0.7:
        return {"type": "function", "function": {"name": name, "arguments": args}}
    return {"name": name, "arguments": args}


def assistant(r, tools, final):
    m = {"role": "assistant", "content": sentence(r)}
    p = r.random()
    if p < 0.15:
        m["content"] = "<think>\n" + sentence(r) + "\n</think>\n\n" + sentence(r)
    elif p < 0.22:
        m["content"] = "\n\n" + sentence(r)
    elif p < 0.3:
        m["reasoning_content"] = r.choice(["", "\n" + sentence(r) + "\n"])
    if not final and r.random() < 0.8:
        m["tool_calls"] = [tool_call(r, tools) for _ in range(r.randint(1, 3))]
        if r.random() < 0.5:
            m["content"] = ""
    return m


def conversation(r, i, all_tools):
    tools = None
    if i % 3 != 0:
        tools = r.sample(all_tools, r.randint(1, min(5, len(all_tools))))
    msgs = []
    if r.random() < 0.6:
        msgs.append({"role": "system", "content": r.choice(["You are a helpful assistant.", sentence(r), ""])})
    for turn in range(r.randint(1, 3)):
        if r.random() < 0.1:
            msgs.append({"role": "user", "content": "<tool_response>\n" + sentence(r) + "\n</tool_response>"})
        msgs.append({"role": "user", "content": sentence(r)})
        if r.random() < 0.1:
            msgs.append({"role": "system", "content": sentence(r)})
        for step in range(r.randint(0, 2)):
            a = assistant(r, tools, final=False)
            msgs.append(a)
            for _ in range(len(a.get("tool_calls", [])) if r.random() < 0.8 else 0):
                msgs.append({"role": "tool", "content": json.dumps(value(r), ensure_ascii=False) if r.random() < 0.6 else sentence(r)})
        last = turn == 2 or r.random() < 0.5
        if not last or r.random() < 0.6:
            msgs.append(assistant(r, tools, final=True))
        if last:
            break
    conv = {"messages": msgs, "add_generation_prompt": msgs[-1]["role"] != "assistant" and r.random() < 0.8}
    if tools is not None:
        conv["tools"] = tools
    elif r.random() < 0.3:
        conv["tools"] = []
    if r.random() < 0.2:
        conv["enable_thinking"] = r.random() < 0.3
    return conv


def gen(n, tools_path):
    all_tools = json.load(open(tools_path, encoding="utf-8"))
    r = random.Random(20261127)
    for i in range(n):
        print(json.dumps(conversation(r, i, all_tools), ensure_ascii=False))


@functools.lru_cache(maxsize=4)
def compiled(template):
    """The template compiled once, as transformers caches it."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def jinja_render(template, conv):
    kw = {}
    if "enable_thinking" in conv:
        kw["enable_thinking"] = conv["enable_thinking"]
    return compiled(template).render(messages=conv["messages"], tools=conv.get("tools"),
                                     add_generation_prompt=conv.get("add_generation_prompt", False),
                                     bos_token="", eos_token="<|im_end|>", **kw)


def check(config_path, conv_path, out_path):
    template = json.load(open(config_path, encoding="utf-8"))["chat_template"]
    convs = [json.loads(l) for l in open(conv_path, encoding="utf-8")]
    outs = [json.loads(l) for l in open(out_path, encoding="utf-8")]
    assert len(convs) == len(outs), f"{len(convs)} conversations but {len(outs)} renderings"
    bad = 0
    stats = {"tools": 0, "tool_calls": 0, "tool_responses": 0, "think": 0}
    for i, (conv, out) in enumerate(zip(convs, outs)):
        want = jinja_render(template, conv)
        errs = []
        if "error" in out:
            errs.append("kdstep error: " + out["error"])
        else:
            got = out["text"]
            if got != want:
                k = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]), min(len(got), len(want)))
                errs.append(f"text differs at char {k}: jinja {want[k-40:k+40]!r} kdstep {got[k-40:k+40]!r}")
            errs += check_spans(conv, out)
        stats["tools"] += bool(conv.get("tools"))
        stats["tool_calls"] += sum(len(m.get("tool_calls", [])) for m in conv["messages"])
        stats["tool_responses"] += sum(m["role"] == "tool" for m in conv["messages"])
        stats["think"] += "<think>" in want
        if errs:
            bad += 1
            print(f"conversation {i}: " + "; ".join(errs))
    print(f"{len(convs)} conversations, {bad} mismatches; with tools {stats['tools']}, tool calls "
          f"{stats['tool_calls']}, tool responses {stats['tool_responses']}, with <think> {stats['think']}")
    return 1 if bad else 0


def check_spans(conv, out):
    errs = []
    b = out["text"].encode("utf-8")
    msgs = conv["messages"]
    ms, cs = out["message_spans"], out["content_spans"]
    if len(ms) != len(msgs) or len(cs) != len(msgs):
        return [f"{len(ms)} message spans for {len(msgs)} messages"]
    prev_end = None
    for j, m in enumerate(msgs):
        s, e = ms[j]
        cs0, ce0 = cs[j]
        block = b[s:e].decode("utf-8")
        if not (block.startswith("<|im_start|>") or (m["role"] == "tool" and block.startswith("\n<tool_response>"))):
            errs.append(f"message {j} span starts {block[:20]!r}")
        if prev_end is not None and s != prev_end:
            errs.append(f"message {j} starts at {s}, previous ended at {prev_end}")
        prev_end = e
        if not (s <= cs0 <= ce0 <= e):
            errs.append(f"message {j} content span {cs[j]} outside {ms[j]}")
        text = b[cs0:ce0].decode("utf-8")
        c = m.get("content") or ""
        if m["role"] == "assistant" and "reasoning_content" not in m and "</think>" in c:
            c = c.split("</think>")[-1].lstrip("\n")
        if text != c and not (m["role"] == "assistant" and text == c.lstrip("\n")):
            errs.append(f"message {j} content span holds {text!r}, content is {c!r}")
    end = len(b)
    if conv.get("add_generation_prompt"):
        gp = "<|im_start|>assistant\n" + ("<think>\n\n</think>\n\n" if conv.get("enable_thinking") is False else "")
        if not b[:out["generation_start"]].decode("utf-8").endswith(gp):
            errs.append("generation_start is not after the generation prompt")
        end -= len(gp.encode("utf-8"))
    if out["generation_start"] != len(b):
        errs.append(f"generation_start {out['generation_start']} != {len(b)}")
    if msgs and prev_end != end:
        errs.append(f"last message ends at {prev_end}, expected {end}")
    calls = [(j, tc) for j, m in enumerate(msgs) for tc in (m.get("tool_calls") or [])]
    if len(calls) != len(out["tool_call_spans"]):
        return errs + [f"{len(out['tool_call_spans'])} tool call spans for {len(calls)} calls"]
    for (j, tc), (s, e), mj in zip(calls, out["tool_call_spans"], out["tool_call_message"]):
        f = tc.get("function") or tc
        args = f["arguments"]
        if isinstance(args, str):
            args = json.loads(args)
        got = json.loads(b[s:e].decode("utf-8"))
        if got != {"name": f["name"], "arguments": args} or mj != j:
            errs.append(f"tool call span {s}:{e} of message {mj} holds {got!r}")
        if b[s - 12:s] != b"<tool_call>\n" or b[e:e + 13] != b"\n</tool_call>":
            errs.append(f"tool call span {s}:{e} is not inside a <tool_call> block")
    return errs


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "render":
        template = json.load(open(sys.argv[2], encoding="utf-8"))["chat_template"]
        for l in open(sys.argv[3], encoding="utf-8"):
            print(json.dumps(jinja_render(template, json.loads(l)), ensure_ascii=False))
    elif sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
