// Load a kdstep-trained tokenizer.json in Hugging Face tokenizers (npm @anush008/tokenizers, a native
// binding of the Rust library) and encode a text with it.
//   node bpe_train_hf.js TOKENIZER_JSON TEXT_FILE
// Prints one JSON line: {"ids", "ids_special", "roundtrip", "vocab"} where roundtrip says whether
// decode(ids, skipSpecial=false) gives back the NFC text.
const fs = require('fs');
const { Tokenizer } = require('@anush008/tokenizers');
(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const text = fs.readFileSync(process.argv[3], 'utf8');
  const enc = await tok.encode(text, null, { addSpecialTokens: false });
  const ids = enc.getIds();
  const enc2 = await tok.encode(text, null, { addSpecialTokens: true });
  const dec = await tok.decode(ids, false);
  const out = { ids, ids_special: enc2.getIds(), roundtrip: dec === text.normalize('NFC') };
  if (!out.roundtrip) {
    let k = 0;
    while (k < dec.length && dec[k] === text[k]) k++;
    out.diff = { at: k, hf: dec.slice(k - 20, k + 20), text: text.slice(k - 20, k + 20) };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => { console.error('HF tokenizers failed: ' + e); process.exit(1); });
