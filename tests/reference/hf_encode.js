// Hugging Face tokenizers (the official node binding) as the oracle.
// usage: node hf_encode.js NODE_MODULES TOKENIZER_JSON CORPUS_JSONL ADD_SPECIAL(0|1) > out.jsonl
// One line per corpus line: {"ids": [...], "offsets": [[s, e], ...]} with offsets in code points.
// With BENCH=1 it prints {"mb", "seconds", "cpu_seconds", "load_seconds", "load_cpu_seconds"} instead
// (encoding with offsets, wall and CPU time; the CPU clock is fairer on a shared machine).
const fs = require('fs');
const path = require('path');
const [nodeModules, tokPath, corpusPath, addSpecial] = process.argv.slice(2);
const { Tokenizer } = require(path.join(nodeModules, 'tokenizers'));
(async () => {
  const lines = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
  const t0 = process.hrtime.bigint();
  const u0 = process.cpuUsage();
  const tok = Tokenizer.fromFile(tokPath);
  const t1 = process.hrtime.bigint();
  const u1 = process.cpuUsage(u0);
  const opts = { addSpecialTokens: addSpecial === '1' };
  if (process.env.BENCH === '1') {
    let bytes = 0;
    for (const s of lines) bytes += Buffer.byteLength(s, 'utf8');
    // best of 2 passes, as bench_tokenizer (HF's own BPE cache stays warm in the second pass)
    let best = 1e30, bestCpu = 1e30;
    for (let pass = 0; pass < 2; pass++) {
      const a = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      for (const s of lines) {
        const enc = await tok.encode(s, null, opts);
        enc.getIds();
        enc.getOffsets();
      }
      const b = process.hrtime.bigint();
      const c1 = process.cpuUsage(c0);
      best = Math.min(best, Number(b - a) / 1e9);
      bestCpu = Math.min(bestCpu, (c1.user + c1.system) / 1e6);
    }
    console.log(JSON.stringify({ mb: bytes / 1e6, seconds: best, cpu_seconds: bestCpu,
      load_seconds: Number(t1 - t0) / 1e9, load_cpu_seconds: (u1.user + u1.system) / 1e6 }));
    return;
  }
  const out = [];
  for (const s of lines) {
    const enc = await tok.encode(s, null, opts);
    out.push(JSON.stringify({ ids: Array.from(enc.getIds()), offsets: enc.getOffsets() }));
    if (out.length >= 512) {
      fs.writeSync(1, out.join('\n') + '\n');
      out.length = 0;
    }
  }
  if (out.length) fs.writeSync(1, out.join('\n') + '\n');
})();
