// HF tokenizers (Rust core, node bindings @anush008/tokenizers) as the reference for our tokenizer.
//   node hf_check.mjs compare <tokenizer.json> <texts.jsonl> <our ids> [our decoded]
//        our ids: one line of ids per text; our decoded: one JSON string per text (decode --json).
//        Ids must be identical; decoded text identical to HF's decode; decode(encode(x)) == x
//        wherever HF's round trip holds. ADD_SPECIAL=1: add_special_tokens=True on both sides.
//   node hf_check.mjs expect  <tokenizer.json> <texts.jsonl> <out.jsonl>
//        HF's ids (without and with special tokens) and decoded text for each text: test data.
//   node hf_check.mjs bench   <tokenizer.json> <texts.jsonl>      (TOKENIZERS_PARALLELISM=false: 1 thread)
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.resolve(".deps/npm/node_modules/@anush008/tokenizers"));
const [mode, tokPath, textsPath, oursPath, oursDecodedPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokPath);
const texts = fs.readFileSync(textsPath, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).text);
const addSpecial = process.env.ADD_SPECIAL === "1";
const opts = { addSpecialTokens: addSpecial };
const name = path.basename(path.dirname(tokPath));

if (mode === "compare") {
  const ours = fs.readFileSync(oursPath, "utf8").split("\n");
  const oursDecoded = oursDecodedPath ? fs.readFileSync(oursDecodedPath, "utf8").split("\n") : null;
  let same = 0, tokens = 0, decodedSame = 0, hfRoundTrip = 0, ourRoundTrip = 0, shown = 0;
  for (let i = 0; i < texts.length; i++) {
    const ids = (await tok.encode(texts[i], null, opts)).getIds();
    tokens += ids.length;
    if (ids.join(" ") === ours[i]) same++;
    else if (shown++ < 5) console.log(`differs at text ${i}: ${JSON.stringify(texts[i]).slice(0, 80)}\n  hf:   ${ids.join(" ").slice(0, 120)}\n  ours: ${ours[i].slice(0, 120)}`);
    if (oursDecoded) {
      const hf = await tok.decode(ids, false);
      const mine = JSON.parse(oursDecoded[i]);
      if (hf === mine) decodedSame++;
      else if (shown++ < 5) console.log(`decoded differs at text ${i}: hf ${JSON.stringify(hf).slice(0, 80)} ours ${JSON.stringify(mine).slice(0, 80)}`);
      if (!addSpecial && hf === texts[i]) {
        hfRoundTrip++;
        if (mine === texts[i]) ourRoundTrip++;
      }
    }
  }
  console.log(`${name}: ${same}/${texts.length} texts encode to identical ids (${tokens} tokens, add_special_tokens=${addSpecial})`);
  let ok = same === texts.length;
  if (oursDecoded) {
    const roundTrip = addSpecial ? "" : `; decode(encode(x)) == x for ${ourRoundTrip} of the ${hfRoundTrip} texts where HF's holds`;
    console.log(`${name}: ${decodedSame}/${texts.length} decode to HF's text${roundTrip}`);
    ok = ok && decodedSame === texts.length && ourRoundTrip === hfRoundTrip;
  }
  process.exit(ok ? 0 : 1);
} else if (mode === "expect") {
  const lines = [];
  for (const text of texts) {
    const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    const idsSpecial = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
    const decoded = await tok.decode(ids, false);
    lines.push(JSON.stringify({ text, ids: Array.from(ids), ids_special: Array.from(idsSpecial), decoded }));
  }
  fs.writeFileSync(oursPath, lines.join("\n") + "\n");
  console.log(`${name}: wrote HF's ids for ${texts.length} texts to ${oursPath}`);
} else if (mode === "bench") {
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  await tok.encodeBatch(texts.slice(0, 1000), opts);  // warm up
  const t0 = process.hrtime.bigint();
  const encs = await tok.encodeBatch(texts, opts);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const n = encs.reduce((k, e) => k + e.getIds().length, 0);
  const threads = process.env.TOKENIZERS_PARALLELISM === "false" ? "1 thread" : "all threads";
  console.log(`HF tokenizers encodeBatch (${name}): ${texts.length} texts, ${(bytes / 1e6).toFixed(1)} MB, ${n} tokens in ${secs.toFixed(2)} s: ${(bytes / 1e6 / secs).toFixed(2)} MB/s (${threads})`);
} else {
  console.error("usage: node hf_check.mjs compare|expect|bench ...");
  process.exit(2);
}
