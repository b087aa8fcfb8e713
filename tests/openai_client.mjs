// The official openai npm client against a running minillm-serve: a non-streamed and a streamed
// chat completion, a completion, the model list and an error.
//   node openai_client.mjs BASE_URL API_KEY     (openai must be resolvable from this file's folder)
import OpenAI from "openai";
import assert from "node:assert/strict";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const models = await client.models.list();
const model = models.data[0].id;
assert.ok(model, "a model is listed");

const messages = [{ role: "system", content: "你是一位精通古典诗词的助手。" }, { role: "user", content: "背诵《静夜思》。" }];
const plain = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
assert.equal(plain.object, "chat.completion");
assert.equal(plain.choices[0].message.role, "assistant");
assert.equal(typeof plain.choices[0].message.content, "string");
assert.ok(["stop", "length"].includes(plain.choices[0].finish_reason));
assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 12);

// Greedy: the streamed pieces add up to the same answer.
const stream = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stream: true });
let text = "", chunks = 0, finish = null;
for await (const chunk of stream) {
  chunks++;
  text += chunk.choices[0].delta.content ?? "";
  finish = chunk.choices[0].finish_reason ?? finish;
}
assert.ok(chunks >= 2, "several chunks");
assert.equal(text, plain.choices[0].message.content);
assert.equal(finish, plain.choices[0].finish_reason);

const completion = await client.completions.create({ model, prompt: "床前明月光", max_tokens: 5, temperature: 0 });
assert.equal(completion.object, "text_completion");
assert.equal(typeof completion.choices[0].text, "string");

await assert.rejects(client.chat.completions.create({ model, messages, temperature: 7 }), (e) => {
  assert.equal(e.status, 400);
  assert.match(e.message, /temperature/);
  return true;
});
console.log(`openai client: ok (${chunks} chunks, answer ${JSON.stringify(text)})`);
