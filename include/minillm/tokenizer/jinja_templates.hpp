// The built-in chat templates (named fallbacks for --template, and what minillm-tokenizer train
// writes into tokenizer_config.json), and the loader of a tokenizer directory's own template.
//   minimind3  MiniMind-3's tokenizer_config.json template: ChatML with a <think> block in every
//              assistant turn, tool definitions, tool calls and tool responses, open_thinking
//   minimind2  MiniMind2's ChatML: default system prompt, no <think> block, assistant header after each user turn
//   llama3     Llama-3 Instruct: header ids, <|eot_id|>, trimmed contents, bos before the first turn
#pragma once

#include <filesystem>
#include <fstream>
#include <string_view>

#include "minillm/tokenizer/chat_template.hpp"
#include "minillm/tokenizer/tokenizer_config.hpp"

namespace minillm::tokenizer {

inline constexpr std::string_view kBuiltinTemplates[] = {"minimind3", "minimind2", "llama3"};

// The Jinja text of a built-in template; throws naming the known ones.
inline std::string_view builtin_template_text(std::string_view name) {
  if (name == "minimind3")  // MiniMind-3's tokenizer_config.json
      return R"jinja({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if true %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if open_thinking is defined and open_thinking is true %}
        {{- '<think>\n' }}
    {%- else %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %})jinja";
  if (name == "minimind2")
    return R"jinja({% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{{ '<|im_start|>system\n' + system_message + '<|im_end|>\n' }}{% else %}{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}{% for message in messages %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|im_start|>user\n' + content + '<|im_end|>\n<|im_start|>assistant\n' }}{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\n' }}{% endif %}{% endfor %})jinja";
  if (name == "llama3")
    return R"jinja({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})jinja";
  throw TokenizerError("unknown chat template \"" + std::string(name) + "\"; known: minimind3, minimind2, llama3");
}

// A built-in template with the special tokens its tokenizers use.
inline ChatTemplate builtin_chat_template(std::string_view name) {
  const auto text = builtin_template_text(name);
  const nlohmann::ordered_json specials = name == "llama3"
      ? nlohmann::ordered_json{{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"}}
      : nlohmann::ordered_json{{"bos_token", "<|im_start|>"}, {"eos_token", "<|im_end|>"}};
  return ChatTemplate(text, "built-in template " + std::string(name), specials);
}

// The special tokens of a tokenizer_config.json as apply_chat_template passes them: bos_token,
// eos_token, ... (a string, or an AddedToken object's "content"; absent when null) and
// additional_special_tokens.
inline nlohmann::ordered_json special_tokens_of(const nlohmann::ordered_json& config) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  auto text = [](const nlohmann::ordered_json& v) -> std::optional<std::string> {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return std::nullopt;
  };
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
    if (config.contains(key))
      if (auto t = text(config[key])) out[key] = *t;
  if (config.contains("additional_special_tokens") && config["additional_special_tokens"].is_array() &&
      !config["additional_special_tokens"].empty()) {
    auto list = nlohmann::ordered_json::array();
    for (const auto& v : config["additional_special_tokens"])
      if (auto t = text(v)) list.push_back(*t);
    out["additional_special_tokens"] = list;
  }
  return out;
}

// The chat template of a tokenizer_config.json: its "chat_template" (a string, or a list of
// {"name", "template"} of which "default" is taken, as transformers does); nullopt when the field
// is absent or null. A file that is not JSON, a template of another type or a template that does
// not parse is an error naming the file.
inline std::optional<ChatTemplate> chat_template_from_config(const std::filesystem::path& config_path) {
  if (!std::filesystem::exists(config_path)) throw TokenizerError("cannot open " + config_path.string());
  const auto cfg = read_json_object(config_path);
  if (!cfg.contains("chat_template") || cfg["chat_template"].is_null()) return std::nullopt;
  const auto& field = cfg["chat_template"];
  std::string source;
  if (field.is_string()) {
    source = field.get<std::string>();
  } else if (field.is_array()) {
    for (const auto& t : field) {
      if (!t.is_object() || !t.contains("name") || !t.contains("template") || !t["template"].is_string())
        throw TokenizerError(config_path.string() + ": chat_template list entries must be {\"name\", \"template\"} objects");
      if (t["name"] == "default") source = t["template"].get<std::string>();
    }
    if (source.empty()) throw TokenizerError(config_path.string() + ": chat_template list has no \"default\" template");
  } else {
    throw TokenizerError(config_path.string() + ": chat_template must be a string or a list of named templates, not " +
                         std::string(field.type_name()));
  }
  try {
    return ChatTemplate(source, config_path.string() + " (chat_template)", special_tokens_of(cfg));
  } catch (const jinja::TemplateError& e) {
    throw TokenizerError(std::string("malformed chat template: ") + e.what());
  }
}

// The template to use for a tokenizer directory: the built-in one `name` names when it is not
// empty, else the directory's own tokenizer_config.json template, else (no file, no template)
// minimind3.
inline ChatTemplate chat_template_of(const std::filesystem::path& tokenizer_dir, std::string_view name = {}) {
  if (!name.empty()) return builtin_chat_template(name);
  const auto config = tokenizer_dir / "tokenizer_config.json";
  if (std::filesystem::exists(config))
    if (auto t = chat_template_from_config(config)) return std::move(*t);
  return builtin_chat_template("minimind3");
}

}  // namespace minillm::tokenizer
