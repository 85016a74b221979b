// Word counts of a text as Hugging Face tokenizers pre-tokenizes it (the tokenizer.json's NFC
// normalizer and Qwen2 Split + ByteLevel pre-tokenizer), for the merge recount in bpe_train.sh.
// The text is fed line by line, as HF's own trainer reads files.
//   node bpe_train_words_hf.js TOKENIZER_JSON TEXT_FILE OUT_JSON
const fs = require('fs');
const { Tokenizer } = require('@anush008/tokenizers');
const tok = Tokenizer.fromFile(process.argv[2]);
const norm = tok.getNormalizer(), pre = tok.getPreTokenizer();
const counts = {};
for (const line of fs.readFileSync(process.argv[3], 'utf8').split(/(?<=\n)/)) {
  for (const [w] of pre.preTokenizeString(norm.normalizeString(line))) counts[w] = (counts[w] || 0) + 1;
}
fs.writeFileSync(process.argv[4], JSON.stringify(counts));
