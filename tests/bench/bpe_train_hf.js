// HF tokenizers' own BPE trainer as the peer for tests/bench/bpe_train.sh: load a tokenizer.json
// (for its NFC normalizer and Qwen2 pre-tokenizer), retrain its BPE model on FILE with the
// binding's default BpeTrainer (vocab 30000, min_frequency 0), print {"seconds", "vocab"}.
//   node bpe_train_hf.js TOKENIZER_JSON FILE OUT_JSON
const { Tokenizer } = require('@anush008/tokenizers');
const tok = Tokenizer.fromFile(process.argv[2]);
const t0 = process.hrtime.bigint();
tok.train([process.argv[3]]);
const s = Number(process.hrtime.bigint() - t0) / 1e9;
tok.save(process.argv[4], false);
process.stdout.write(JSON.stringify({ seconds: s, vocab: tok.getVocabSize(true) }) + '\n');
