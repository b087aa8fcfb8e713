// The Jinja text of each chat format, written into tokenizer_config.json so HF tools render
// conversations exactly as render_chat does (tests/data/chat/expected.json was made from these).
#pragma once

#include <filesystem>
#include <fstream>
#include <string_view>

#include "minillm/tokenizer/chat_template.hpp"
#include "minillm/tokenizer/tokenizer_config.hpp"

namespace minillm::tokenizer {

inline std::string_view jinja_template(ChatFormat format) {
  switch (format) {
    case ChatFormat::minimind3:  // MiniMind-3's tokenizer_config.json
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
    case ChatFormat::minimind2:
      return R"jinja({% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{{ '<|im_start|>system\n' + system_message + '<|im_end|>\n' }}{% else %}{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}{% for message in messages %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|im_start|>user\n' + content + '<|im_end|>\n<|im_start|>assistant\n' }}{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\n' }}{% endif %}{% endfor %})jinja";
    case ChatFormat::llama3:
      return R"jinja({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})jinja";
  }
  return {};
}

// The chat format a tokenizer directory declares: its tokenizer_config.json "chat_template" when it
// is one of ours word for word; otherwise recognised by its markers (Llama-3 headers, a <think>
// block, plain ChatML); minimind3 when the file or the field is absent.
inline ChatFormat chat_format_of(const std::filesystem::path& tokenizer_dir) {
  const auto cfg = read_tokenizer_config(tokenizer_dir);
  if (!cfg.contains("chat_template") || cfg["chat_template"].is_null()) return ChatFormat::minimind3;
  if (!cfg["chat_template"].is_string())
    throw TokenizerError((tokenizer_dir / "tokenizer_config.json").string() + ": chat_template must be a string, got " +
                         cfg["chat_template"].type_name());
  const auto text = cfg["chat_template"].get<std::string>();
  for (const auto f : {ChatFormat::minimind3, ChatFormat::minimind2, ChatFormat::llama3})
    if (text == jinja_template(f)) return f;
  if (text.find("<|start_header_id|>") != std::string::npos) return ChatFormat::llama3;
  if (text.find("<think>") != std::string::npos) return ChatFormat::minimind3;
  if (text.find("<|im_start|>") != std::string::npos) return ChatFormat::minimind2;
  throw TokenizerError((tokenizer_dir / "tokenizer_config.json").string() +
                       ": chat_template is none of minimind3, minimind2, llama3; name one with --template");
}

// The format `name` names (a --template option) when it is not empty, else the one tokenizer_dir declares.
inline ChatFormat chat_format_of(const std::filesystem::path& tokenizer_dir, std::string_view name) {
  return name.empty() ? chat_format_of(tokenizer_dir) : chat_format_from_name(name);
}

}  // namespace minillm::tokenizer
