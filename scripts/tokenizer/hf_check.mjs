// HF tokenizers (Rust core, node bindings @anush008/tokenizers) as the reference for our tokenizer.
//   node hf_check.mjs compare <tokenizer.json> <texts.jsonl> <our ids, one line per text>
//   node hf_check.mjs bench   <tokenizer.json> <texts.jsonl>      (TOKENIZERS_PARALLELISM=false: 1 thread)
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.resolve(".deps/npm/node_modules/@anush008/tokenizers"));
const [mode, tokPath, textsPath, oursPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokPath);
const texts = fs.readFileSync(textsPath, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).text);
const opts = { addSpecialTokens: false };

if (mode === "compare") {
  const ours = fs.readFileSync(oursPath, "utf8").split("\n");
  let same = 0, tokens = 0;
  for (let i = 0; i < texts.length; i++) {
    const ids = (await tok.encode(texts[i], null, opts)).getIds();
    tokens += ids.length;
    if (ids.join(" ") === ours[i]) same++;
    else if (same + 5 > i) console.log(`differs at text ${i}: ${JSON.stringify(texts[i]).slice(0, 80)}\n  hf:   ${ids.join(" ").slice(0, 120)}\n  ours: ${ours[i].slice(0, 120)}`);
  }
  console.log(`HF tokenizers loaded our tokenizer.json: ${same}/${texts.length} held-out texts encode to identical ids (${tokens} tokens)`);
  process.exit(same === texts.length ? 0 : 1);
} else if (mode === "bench") {
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  await tok.encodeBatch(texts.slice(0, 1000), opts);  // warm up
  const t0 = process.hrtime.bigint();
  const encs = await tok.encodeBatch(texts, opts);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const n = encs.reduce((k, e) => k + e.getIds().length, 0);
  const threads = process.env.TOKENIZERS_PARALLELISM === "false" ? "1 thread" : "all threads";
  console.log(`HF tokenizers encodeBatch: ${texts.length} texts, ${(bytes / 1e6).toFixed(1)} MB, ${n} tokens in ${secs.toFixed(2)} s: ${(bytes / 1e6 / secs).toFixed(2)} MB/s (${threads})`);
} else {
  console.error("usage: node hf_check.mjs compare|bench ...");
  process.exit(2);
}
