// A small Jinja2 interpreter for HF chat templates, rendering as transformers' apply_chat_template
// does: Jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop controls, the
// default (lenient) Undefined, no trailing newline kept, `tojson` as json.dumps(ensure_ascii=False),
// and the globals raise_exception and strftime_now.
//
// Covered: {{ }}, {% %}, {# #} with -/+ whitespace control; if/elif/else, for (else, `if` filter,
// tuple unpacking, loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem),
// break/continue, set (plain, tuple, namespace attribute, block), macro (defaults, varargs-free),
// call/caller, filter blocks, generation/endgeneration (spans recorded, as transformers' tracker);
// Python literals, arithmetic, comparisons, `in`, `~`, conditional expressions, slicing; the
// filters and tests chat templates use (see filter() and test()); string/dict/list methods of the
// sandbox (no mutating ones). Values are JSON data plus namespaces, macros and Undefined.
//
// Guards for untrusted templates: a step budget (loops that never end), a cap on output and on
// any string or list built (templates that explode), and nesting limits for parsing and calls.
// Every error is a TemplateError "NAME:LINE:COL: what".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace minillm::jinja {

using json = nlohmann::ordered_json;

class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Limits {
  uint64_t max_steps = 20'000'000;      // expression and statement evaluations per render
  size_t max_output = 64u << 20;        // bytes of output, and of any one string or list built
  int max_depth = 64;                   // nesting of macro calls while rendering
  int max_parse_depth = 128;            // nesting of expressions and blocks while parsing
};

// ---------------------------------------------------------------------------------- UTF-8 helpers
namespace utf8 {
inline std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {  // invalid byte: keep it as one code point (U+DC80+byte, as Python's surrogateescape)
      out.push_back(0xDC00 + c);
      ++i;
      continue;
    }
    char32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}
inline void append(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out.push_back(static_cast<char>(cp - 0xDC00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}
inline std::string encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (auto cp : s) append(out, cp);
  return out;
}
inline size_t length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) n += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
  return n;
}
// Python's str.isspace.
inline bool is_space(char32_t c) {
  return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
}  // namespace utf8

// ------------------------------------------------------------------------------------------ values
struct Value;
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};
using Function = std::function<Value(CallArgs&)>;

struct Value {
  enum class Kind : uint8_t { undefined, data, function, ns };
  Kind kind = Kind::undefined;
  std::shared_ptr<const json> root;  // owns *j (a value inside a larger document shares it)
  const json* j = nullptr;
  std::shared_ptr<const Function> fn;
  std::shared_ptr<json> ns;  // a namespace's attributes (the only mutable value)
  std::string name;          // undefined: what was looked up

  static Value undefined(std::string what) {
    Value v;
    v.name = std::move(what);
    return v;
  }
  static Value of(json x) {
    Value v;
    v.kind = Kind::data;
    v.root = std::make_shared<const json>(std::move(x));
    v.j = v.root.get();
    return v;
  }
  static Value function(Function f) {
    Value v;
    v.kind = Kind::function;
    v.fn = std::make_shared<const Function>(std::move(f));
    return v;
  }
  Value child(const json& x) const {  // an element of this value's document
    Value v;
    v.kind = Kind::data;
    v.root = root;
    v.j = &x;
    return v;
  }
  bool is_undefined() const { return kind == Kind::undefined; }
  bool is_data() const { return kind == Kind::data; }
  bool is_string() const { return is_data() && j->is_string(); }
  bool is_none() const { return is_data() && j->is_null(); }
  bool is_number() const { return is_data() && j->is_number(); }  // bool excluded, as Jinja's `number` test is not
  bool is_list() const { return is_data() && j->is_array(); }
  bool is_dict() const { return is_data() && j->is_object(); }
  const std::string& str() const { return j->get_ref<const std::string&>(); }
};

// ----------------------------------------------------------------------------------------- tokens
enum class Tok { text, var_begin, var_end, block_begin, block_end, name, string, integer, number, op, eof };

struct Token {
  Tok type;
  std::string value;
  int line, col;
};

// -------------------------------------------------------------------------------------------- AST
struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Expr {
  enum class Kind {
    literal, name, list, tuple, dict, attr, item, slice, call, filter, test, unary, binary, cond
  };
  Kind kind;
  int line = 0, col = 0;
  std::shared_ptr<const json> literal;  // literal (shared by every evaluation, never copied)
  std::string name;                // name, attr, filter/test name, operator
  std::vector<ExprPtr> items;      // list/tuple/dict (key, value pairs flattened), args; slice: start stop step (may be null)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr a, b, c;                 // operands: object / lhs / condition...
  bool negated = false;            // test: `is not`
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;
struct Stmt {
  enum class Kind { text, output, if_, for_, set, set_block, macro, call_block, filter_block, break_, continue_, generation };
  Kind kind;
  int line = 0, col = 0;
  std::string text;                           // text
  ExprPtr expr;                               // output, if condition, for iterable, set value, call expression
  ExprPtr cond;                               // for ... if cond
  std::vector<std::string> targets;           // for/set names; set: {"ns", "attr"} with attr_target
  bool attr_target = false;
  std::string name;                           // macro name
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro/call parameters and defaults
  ExprPtr filter;                             // set block / filter block: the filter chain applied to the body (a filter Expr on a null operand)
  Body body, else_body;
  std::vector<std::pair<ExprPtr, Body>> elifs;  // if: (condition, body) after the first
};

// ------------------------------------------------------------------------------------------ lexer
class Lexer {
 public:
  Lexer(std::string_view src, std::string name) : src_(src), name_(std::move(name)) {}

  std::vector<Token> run() {
    // As Jinja2: newlines normalised to \n, and (keep_trailing_newline=False) one final newline dropped.
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\r') {
        if (i + 1 < src_.size() && src_[i + 1] == '\n') src_.erase(i, 1);
        else src_[i] = '\n';
      }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    s_ = src_;
    std::vector<Token> out;
    bool trim_next = false;       // `-%}`-style: strip the whitespace that follows
    bool block_newline = false;   // trim_blocks: drop one newline after a block or comment end
    while (pos_ < s_.size()) {
      const size_t open = find_open(pos_);
      std::string text(s_.substr(pos_, open - pos_));
      if (trim_next) text.erase(0, std::min(text.size(), text.find_first_not_of(" \t\n\r\f\v")));
      else if (block_newline && !text.empty() && text[0] == '\n') text.erase(0, 1);
      trim_next = block_newline = false;
      const int text_line = line_, text_col = col_;
      advance_to(open);
      if (open >= s_.size()) {
        if (!text.empty()) out.push_back({Tok::text, text, text_line, text_col});
        break;
      }
      const char kind = s_[open + 1];  // '{', '%' or '#'
      const char mod = open + 2 < s_.size() ? s_[open + 2] : '\0';
      if (mod == '-') {
        text.erase(text.find_last_not_of(" \t\n\r\f\v") + 1);
      } else if (kind != '{' && mod != '+') {  // lstrip_blocks: spaces and tabs from the line start to a block/comment tag
        const size_t nl = text.find_last_of('\n');
        const size_t line_start = nl == std::string::npos ? 0 : nl + 1;
        const bool at_line_start = nl != std::string::npos || text_starts_line(out, open);
        if (at_line_start && text.find_first_not_of(" \t\f\v", line_start) == std::string::npos) text.erase(line_start);
      }
      if (!text.empty()) out.push_back({Tok::text, text, text_line, text_col});
      const int tag_line = line_, tag_col = col_;
      advance_to(open + 2 + (mod == '-' || mod == '+' ? 1 : 0));
      if (kind == '#') {
        const size_t end = s_.find("#}", pos_);
        if (end == std::string::npos) fail(tag_line, tag_col, "unclosed comment (missing '#}')");
        trim_next = end > pos_ && s_[end - 1] == '-';
        block_newline = !trim_next;
        advance_to(end + 2);
        continue;
      }
      const bool is_block = kind == '%';
      out.push_back({is_block ? Tok::block_begin : Tok::var_begin, "", tag_line, tag_col});
      if (is_block && raw_block(out)) continue;
      lex_tag(out, is_block ? '%' : '}', trim_next);
      block_newline = is_block && !trim_next;
    }
    out.push_back({Tok::eof, "", line_, col_});
    return out;
  }

 private:
  std::string src_;
  std::string_view s_;
  std::string name_;
  size_t pos_ = 0;
  int line_ = 1, col_ = 1;

  [[noreturn]] void fail(int line, int col, const std::string& what) const {
    throw TemplateError(name_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + what);
  }
  size_t find_open(size_t from) const {
    for (size_t i = from; i + 1 < s_.size(); ++i)
      if (s_[i] == '{' && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return s_.size();
  }
  // Whether only spaces and tabs stand between the line's start and the tag at `open`.
  bool text_starts_line(const std::vector<Token>&, size_t open) const {
    size_t i = open;
    while (i > 0 && (s_[i - 1] == ' ' || s_[i - 1] == '\t')) --i;
    return i == 0 || s_[i - 1] == '\n';
  }
  void advance_to(size_t to) {
    for (; pos_ < to && pos_ < s_.size(); ++pos_) {
      if (s_[pos_] == '\n') ++line_, col_ = 1;
      else if ((static_cast<unsigned char>(s_[pos_]) & 0xC0) != 0x80) ++col_;
    }
  }
  // {% raw %}...{% endraw %}: the body is text.
  bool raw_block(std::vector<Token>& out) {
    size_t p = pos_;
    while (p < s_.size() && std::isspace(static_cast<unsigned char>(s_[p]))) ++p;
    if (s_.compare(p, 3, "raw") != 0 || (p + 3 < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p + 3])) || s_[p + 3] == '_')))
      return false;
    const int line = line_, col = col_;
    const size_t close = s_.find("%}", p + 3);
    if (close == std::string::npos) fail(line, col, "unclosed block tag (missing '%}')");
    size_t search = close + 2, end = std::string::npos, end_close = 0;
    while ((end = s_.find("{%", search)) != std::string::npos) {
      size_t q = end + 2;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) ++q;
      while (q < s_.size() && std::isspace(static_cast<unsigned char>(s_[q]))) ++q;
      if (s_.compare(q, 6, "endraw") == 0) {
        end_close = s_.find("%}", q);
        break;
      }
      search = end + 2;
    }
    if (end == std::string::npos || end_close == std::string::npos) fail(line, col, "unclosed raw block (missing '{% endraw %}')");
    out.pop_back();  // the block_begin
    out.push_back({Tok::text, std::string(s_.substr(close + 2, end - close - 2)), line, col});
    advance_to(end_close + 2);
    return true;
  }
  void lex_tag(std::vector<Token>& out, char closer, bool& trim_next) {
    std::vector<char> brackets;
    while (true) {
      while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) advance_to(pos_ + 1);
      const int line = line_, col = col_;
      if (pos_ >= s_.size()) fail(line, col, closer == '%' ? "unclosed block tag (missing '%}')" : "unclosed expression (missing '}}')");
      const char c = s_[pos_];
      auto at = [&](std::string_view t) { return s_.compare(pos_, t.size(), t) == 0; };
      if (brackets.empty()) {
        const std::string end = std::string(1, closer) + "}";
        if (at("-" + end) || at(end)) {
          trim_next = c == '-';
          advance_to(pos_ + end.size() + (trim_next ? 1 : 0));
          out.push_back({closer == '%' ? Tok::block_end : Tok::var_end, "", line, col});
          return;
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        out.push_back({Tok::name, std::string(s_.substr(pos_, e - pos_)), line, col});
        advance_to(e);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = pos_;
        bool is_float = false;
        while (e < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        if (e + 1 < s_.size() && s_[e] == '.' && std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        }
        if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
          size_t f = e + 1;
          if (f < s_.size() && (s_[f] == '+' || s_[f] == '-')) ++f;
          if (f < s_.size() && std::isdigit(static_cast<unsigned char>(s_[f]))) {
            is_float = true;
            e = f;
            while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
          }
        }
        std::string digits;
        for (size_t i = pos_; i < e; ++i)
          if (s_[i] != '_') digits.push_back(s_[i]);
        out.push_back({is_float ? Tok::number : Tok::integer, digits, line, col});
        advance_to(e);
      } else if (c == '\'' || c == '"') {
        out.push_back({Tok::string, string_literal(c, line, col), line, col});
      } else {
        static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                    "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
        const char* found = nullptr;
        for (const char* op : ops)
          if (at(op)) {
            found = op;
            break;
          }
        if (found == nullptr) fail(line, col, std::string("unexpected character '") + c + "'");
        const std::string op = found;
        if (op == "(" || op == "[" || op == "{") brackets.push_back(op[0]);
        if (op == ")" || op == "]" || op == "}") {
          const char want = op == ")" ? '(' : op == "]" ? '[' : '{';
          if (brackets.empty() || brackets.back() != want) fail(line, col, "unexpected '" + op + "'");
          brackets.pop_back();
        }
        out.push_back({Tok::op, op, line, col});
        advance_to(pos_ + op.size());
      }
    }
  }
  // Python string escapes; the value is UTF-8.
  std::string string_literal(char quote, int line, int col) {
    std::string v;
    size_t i = pos_ + 1;
    while (true) {
      if (i >= s_.size()) fail(line, col, "unterminated string literal");
      const char c = s_[i];
      if (c == quote) break;
      if (c != '\\') {
        v.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= s_.size()) fail(line, col, "unterminated string literal");
      const char e = s_[i + 1];
      i += 2;
      switch (e) {
        case 'n': v.push_back('\n'); break;
        case 't': v.push_back('\t'); break;
        case 'r': v.push_back('\r'); break;
        case '0': v.push_back('\0'); break;
        case 'a': v.push_back('\a'); break;
        case 'b': v.push_back('\b'); break;
        case 'f': v.push_back('\f'); break;
        case 'v': v.push_back('\v'); break;
        case '\\': v.push_back('\\'); break;
        case '\'': v.push_back('\''); break;
        case '"': v.push_back('"'); break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + n > s_.size()) fail(line, col, "truncated \\" + std::string(1, e) + " escape");
          char32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = s_[i + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) fail(line, col, "bad \\" + std::string(1, e) + " escape");
            cp = cp * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : std::tolower(h) - 'a' + 10);
          }
          if (cp > 0x10FFFF) fail(line, col, "escape beyond U+10FFFF");
          utf8::append(v, cp);
          i += n;
          break;
        }
        default: v.push_back('\\'); v.push_back(e);  // Python keeps unknown escapes
      }
    }
    advance_to(i + 1);
    return v;
  }
};

// ----------------------------------------------------------------------------------------- parser
class Parser {
 public:
  Parser(std::vector<Token> toks, std::string name, int max_depth)
      : t_(std::move(toks)), name_(std::move(name)), max_depth_(max_depth) {}

  Body parse() {
    Body body = parse_body({});
    if (cur().type != Tok::eof) fail(cur(), "unexpected '" + end_tag_ + "'");
    return body;
  }

 private:
  std::vector<Token> t_;
  size_t p_ = 0;
  std::string name_;
  int max_depth_, depth_ = 0;
  std::string end_tag_;  // the block keyword that stopped parse_body

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > p.max_depth_) p.fail(p.cur(), "nesting deeper than " + std::to_string(p.max_depth_));
    }
    ~DepthGuard() { --p.depth_; }
  };

  [[noreturn]] void fail(const Token& t, const std::string& what) const {
    throw TemplateError(name_ + ":" + std::to_string(t.line) + ":" + std::to_string(t.col) + ": " + what);
  }
  const Token& cur() const { return t_[p_]; }
  const Token& next() { return t_[p_ < t_.size() - 1 ? p_++ : p_]; }
  bool is_op(std::string_view op) const { return cur().type == Tok::op && cur().value == op; }
  bool is_name(std::string_view n) const { return cur().type == Tok::name && cur().value == n; }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::eof: return "end of template";
      case Tok::block_end: return "end of block '%}'";
      case Tok::var_end: return "end of expression '}}'";
      case Tok::string: return "string";
      case Tok::text: return "text";
      default: return "'" + t.value + "'";
    }
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) fail(cur(), "expected '" + std::string(op) + "', got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().type != Tok::name) fail(cur(), "expected a name, got " + describe(cur()));
    return next().value;
  }
  void expect_block_end() {
    if (cur().type != Tok::block_end) fail(cur(), "expected end of block '%}', got " + describe(cur()));
    next();
  }
  template <class T>
  std::unique_ptr<T> make(typename T::Kind k, const Token& at) {
    auto n = std::make_unique<T>();
    n->kind = k;
    n->line = at.line;
    n->col = at.col;
    return n;
  }

  // Statements until a block tag whose keyword is in `ends` (left unconsumed after `{%`; end_tag_ names it).
  Body parse_body(const std::vector<std::string_view>& ends) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::eof) {
        if (!ends.empty()) {
          std::string want;
          for (auto e : ends) want += (want.empty() ? "" : " or ") + std::string("'") + std::string(e) + "'";
          fail(t, "unexpected end of template; expected " + want);
        }
        return body;
      }
      if (t.type == Tok::text) {
        auto s = make<Stmt>(Stmt::Kind::text, t);
        s->text = next().value;
        body.push_back(std::move(s));
      } else if (t.type == Tok::var_begin) {
        auto s = make<Stmt>(Stmt::Kind::output, next());
        s->expr = parse_expression();
        if (cur().type != Tok::var_end) fail(cur(), "expected end of expression '}}', got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::block_begin) {
        const Token& kw = t_[p_ + 1];
        if (kw.type != Tok::name) fail(kw, "expected a statement keyword, got " + describe(kw));
        if (std::find(ends.begin(), ends.end(), kw.value) != ends.end()) {
          next();  // `{%`; the keyword is current
          end_tag_ = kw.value;
          return body;
        }
        body.push_back(parse_statement());
      } else {
        fail(t, "unexpected " + describe(t));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    next();  // {%
    const Token kw = next();
    const std::string& k = kw.value;
    if (k == "if") {
      auto s = make<Stmt>(Stmt::Kind::if_, kw);
      s->expr = parse_expression();
      expect_block_end();
      s->body = parse_body({"elif", "else", "endif"});
      while (end_tag_ == "elif") {
        next();
        auto cond = parse_expression();
        expect_block_end();
        auto b = parse_body({"elif", "else", "endif"});
        s->elifs.emplace_back(std::move(cond), std::move(b));
      }
      if (end_tag_ == "else") {
        next();
        expect_block_end();
        s->else_body = parse_body({"endif"});
      }
      next();
      expect_block_end();
      return s;
    }
    if (k == "for") {
      auto s = make<Stmt>(Stmt::Kind::for_, kw);
      s->targets.push_back(expect_name());
      while (is_op(",")) {
        next();
        s->targets.push_back(expect_name());
      }
      if (!is_name("in")) fail(cur(), "expected 'in' in for loop, got " + describe(cur()));
      next();
      s->expr = parse_or_test(/*no_cond=*/true);
      if (is_name("if")) {
        next();
        s->cond = parse_expression();
      }
      if (is_name("recursive")) fail(cur(), "recursive for loops are not supported");
      expect_block_end();
      s->body = parse_body({"else", "endfor"});
      if (end_tag_ == "else") {
        next();
        expect_block_end();
        s->else_body = parse_body({"endfor"});
      }
      next();
      expect_block_end();
      return s;
    }
    if (k == "set") {
      std::vector<std::string> targets{expect_name()};
      bool attr = false;
      if (is_op(".")) {
        next();
        targets.push_back(expect_name());
        attr = true;
      } else {
        while (is_op(",")) {
          next();
          targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        next();
        auto s = make<Stmt>(Stmt::Kind::set, kw);
        s->targets = std::move(targets);
        s->attr_target = attr;
        s->expr = parse_tuple_or_expression();
        expect_block_end();
        return s;
      }
      if (attr || targets.size() != 1) fail(cur(), "expected '=' in set, got " + describe(cur()));
      auto s = make<Stmt>(Stmt::Kind::set_block, kw);
      s->targets = std::move(targets);
      if (is_op("|")) s->filter = parse_filters(nullptr);
      expect_block_end();
      s->body = parse_body({"endset"});
      next();
      expect_block_end();
      return s;
    }
    if (k == "macro" || k == "call") {
      auto s = make<Stmt>(k == "macro" ? Stmt::Kind::macro : Stmt::Kind::call_block, kw);
      if (k == "macro") s->name = expect_name();
      if (is_op("(")) {  // parameters: name or name=default
        next();
        while (!is_op(")")) {
          std::string param = expect_name();
          ExprPtr def;
          if (is_op("=")) {
            next();
            def = parse_expression();
          }
          s->params.emplace_back(std::move(param), std::move(def));
          if (!is_op(")")) expect_op(",");
        }
        next();
      } else if (k == "macro") {
        fail(cur(), "expected '(' after macro name, got " + describe(cur()));
      }
      if (k == "call") {
        s->expr = parse_expression();
        if (s->expr->kind != Expr::Kind::call) fail(kw, "expected a macro call after 'call'");
      }
      expect_block_end();
      s->body = parse_body({k == "macro" ? "endmacro" : "endcall"});
      next();
      if (cur().type == Tok::name && k == "macro" && cur().value == s->name) next();
      expect_block_end();
      return s;
    }
    if (k == "filter") {
      auto s = make<Stmt>(Stmt::Kind::filter_block, kw);
      s->filter = parse_filters(nullptr, /*first_without_bar=*/true);
      expect_block_end();
      s->body = parse_body({"endfilter"});
      next();
      expect_block_end();
      return s;
    }
    if (k == "generation") {
      auto s = make<Stmt>(Stmt::Kind::generation, kw);
      expect_block_end();
      s->body = parse_body({"endgeneration"});
      next();
      expect_block_end();
      return s;
    }
    if (k == "break" || k == "continue") {
      auto s = make<Stmt>(k == "break" ? Stmt::Kind::break_ : Stmt::Kind::continue_, kw);
      expect_block_end();
      return s;
    }
    if (k.rfind("end", 0) == 0 || k == "elif" || k == "else") fail(kw, "unexpected '" + k + "' (no open block it closes)");
    if (k == "include" || k == "extends" || k == "import" || k == "from" || k == "block")
      fail(kw, "'" + k + "' is not supported in chat templates");
    fail(kw, "unknown statement '" + k + "'");
  }

  // -------- expressions (Jinja2's precedence: or, and, not, compare, + -, ~, * / // %, **, unary, postfix, filters)
  ExprPtr parse_tuple_or_expression() {
    const Token at = cur();
    auto e = parse_expression();
    if (!is_op(",")) return e;
    auto t = make<Expr>(Expr::Kind::tuple, at);
    t->items.push_back(std::move(e));
    while (is_op(",")) {
      next();
      if (cur().type == Tok::block_end || is_op(")")) break;
      t->items.push_back(parse_expression());
    }
    return t;
  }
  ExprPtr parse_expression() { return parse_or_test(false); }
  ExprPtr parse_or_test(bool no_cond) {
    DepthGuard guard(*this);
    const Token at = cur();
    auto e = parse_or();
    while (!no_cond && is_name("if")) {
      next();
      auto c = make<Expr>(Expr::Kind::cond, at);
      c->c = parse_or();
      c->a = std::move(e);
      if (is_name("else")) {
        next();
        c->b = parse_or_test(false);
      }
      e = std::move(c);
    }
    return e;
  }
  ExprPtr binary(const Token& at, std::string op, ExprPtr l, ExprPtr r) {
    auto b = make<Expr>(Expr::Kind::binary, at);
    b->name = std::move(op);
    b->a = std::move(l);
    b->b = std::move(r);
    return b;
  }
  ExprPtr parse_or() {
    auto e = parse_and();
    while (is_name("or")) {
      const Token at = next();
      e = binary(at, "or", std::move(e), parse_and());
    }
    return e;
  }
  ExprPtr parse_and() {
    auto e = parse_not();
    while (is_name("and")) {
      const Token at = next();
      e = binary(at, "and", std::move(e), parse_not());
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      const Token at = next();
      auto u = make<Expr>(Expr::Kind::unary, at);
      u->name = "not";
      u->a = parse_not();
      return u;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    auto e = parse_math1();
    while (true) {
      const Token at = cur();
      std::string op;
      if (cur().type == Tok::op && (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == ">" ||
                                    cur().value == "<=" || cur().value == ">=")) {
        op = next().value;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && t_[p_ + 1].type == Tok::name && t_[p_ + 1].value == "in") {
        next();
        next();
        op = "not in";
      } else {
        return e;
      }
      e = binary(at, op, std::move(e), parse_math1());
    }
  }
  ExprPtr parse_math1() {
    auto e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token at = next();
      e = binary(at, at.value, std::move(e), parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    auto e = parse_math2();
    while (is_op("~")) {
      const Token at = next();
      e = binary(at, "~", std::move(e), parse_math2());
    }
    return e;
  }
  ExprPtr parse_math2() {
    auto e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token at = next();
      e = binary(at, at.value, std::move(e), parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    auto e = parse_unary(true);
    while (is_op("**")) {
      const Token at = next();
      e = binary(at, "**", std::move(e), parse_unary(true));
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token at = next();
      e = make<Expr>(Expr::Kind::unary, at);
      e->name = at.value;
      e->a = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }
  ExprPtr parse_primary() {
    const Token t = cur();
    switch (t.type) {
      case Tok::name: {
        next();
        if (t.value == "true" || t.value == "True") return literal(t, true);
        if (t.value == "false" || t.value == "False") return literal(t, false);
        if (t.value == "none" || t.value == "None") return literal(t, nullptr);
        auto n = make<Expr>(Expr::Kind::name, t);
        n->name = t.value;
        return n;
      }
      case Tok::string: {
        std::string s = next().value;
        while (cur().type == Tok::string) s += next().value;  // adjacent literals concatenate
        return literal(t, s);
      }
      case Tok::integer: {
        next();
        try {
          return literal(t, std::stoll(t.value));
        } catch (const std::out_of_range&) {
          fail(t, "integer literal " + t.value + " is out of range");
        }
      }
      case Tok::number: next(); return literal(t, std::strtod(t.value.c_str(), nullptr));  // out of range: inf, as Python
      case Tok::op:
        if (t.value == "(") {
          next();
          if (is_op(")")) {
            next();
            return make<Expr>(Expr::Kind::tuple, t);
          }
          auto e = parse_expression();
          if (is_op(",")) {
            auto tup = make<Expr>(Expr::Kind::tuple, t);
            tup->items.push_back(std::move(e));
            while (is_op(",")) {
              next();
              if (is_op(")")) break;
              tup->items.push_back(parse_expression());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.value == "[") {
          next();
          auto l = make<Expr>(Expr::Kind::list, t);
          while (!is_op("]")) {
            l->items.push_back(parse_expression());
            if (!is_op("]")) expect_op(",");
          }
          next();
          return l;
        }
        if (t.value == "{") {
          next();
          auto d = make<Expr>(Expr::Kind::dict, t);
          while (!is_op("}")) {
            d->items.push_back(parse_expression());
            expect_op(":");
            d->items.push_back(parse_expression());
            if (!is_op("}")) expect_op(",");
          }
          next();
          return d;
        }
        break;
      default: break;
    }
    fail(t, "unexpected " + describe(t) + " in expression");
  }
  ExprPtr literal(const Token& at, json v) {
    auto l = make<Expr>(Expr::Kind::literal, at);
    l->literal = std::make_shared<const json>(std::move(v));
    return l;
  }
  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token at = cur();
      if (is_op(".")) {
        next();
        auto a = make<Expr>(Expr::Kind::attr, at);
        if (cur().type == Tok::integer) a->name = next().value;  // x.0 is x[0]
        else a->name = expect_name();
        a->a = std::move(e);
        e = std::move(a);
      } else if (is_op("[")) {
        next();
        e = parse_subscript(at, std::move(e));
      } else if (is_op("(")) {
        e = parse_call(at, std::move(e));
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_subscript(const Token& at, ExprPtr obj) {
    ExprPtr parts[3];
    bool is_slice = false;
    int part = 0;
    while (!is_op("]")) {
      if (is_op(":")) {
        next();
        is_slice = true;
        if (++part > 2) fail(cur(), "too many ':' in slice");
        continue;
      }
      if (parts[part]) fail(cur(), "expected ']' or ':', got " + describe(cur()));
      parts[part] = parse_expression();
    }
    next();
    if (!is_slice) {
      if (!parts[0]) fail(at, "empty subscript");
      auto i = make<Expr>(Expr::Kind::item, at);
      i->a = std::move(obj);
      i->b = std::move(parts[0]);
      return i;
    }
    auto s = make<Expr>(Expr::Kind::slice, at);
    s->a = std::move(obj);
    for (auto& p : parts) s->items.push_back(std::move(p));
    return s;
  }
  void parse_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().type == Tok::name && t_[p_ + 1].type == Tok::op && t_[p_ + 1].value == "=") {
        std::string key = next().value;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!call.kwargs.empty()) fail(cur(), "positional argument after keyword argument");
        call.items.push_back(parse_expression());
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
  }
  ExprPtr parse_call(const Token& at, ExprPtr callee) {
    auto c = make<Expr>(Expr::Kind::call, at);
    c->a = std::move(callee);
    parse_args(*c);
    return c;
  }
  // `| name(args)` chains; on a null operand they describe a filter block or `set ... | filter`.
  ExprPtr parse_filters(ExprPtr e, bool first_without_bar = false) {
    bool first = true;
    while (is_op("|") || (first && first_without_bar)) {
      if (!(first && first_without_bar)) next();
      first = false;
      const Token at = cur();
      auto f = make<Expr>(Expr::Kind::filter, at);
      f->name = expect_name();
      while (is_op(".")) {  // dotted filter names
        next();
        f->name.push_back('.');
        f->name += expect_name();
      }
      if (is_op("(")) parse_args(*f);
      f->a = std::move(e);
      e = std::move(f);
    }
    return e;
  }
  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filters(std::move(e));
      } else if (is_name("is")) {
        const Token at = next();
        auto t = make<Expr>(Expr::Kind::test, at);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        while (is_op(".")) {
          next();
          t->name.push_back('.');
          t->name += expect_name();
        }
        if (is_op("(")) {
          parse_args(*t);
        } else if ((cur().type == Tok::name || cur().type == Tok::string || cur().type == Tok::integer ||
                    cur().type == Tok::number || is_op("[") || is_op("{") || is_op("(")) &&
                   !(is_name("else") || is_name("or") || is_name("and") || is_name("if") || is_name("in") ||
                     is_name("not") || is_name("is"))) {
          t->items.push_back(parse_postfix(parse_primary()));  // `is sameas false`, `is divisibleby 3`
        }
        t->a = std::move(e);
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
};

// --------------------------------------------------------------------------- Python-like printing
namespace py {
inline std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = json(d).dump();  // shortest round-trip digits
  // Python switches to exponent notation from 1e16; nlohmann from 1e15 (also below 1e-4 alike).
  const auto e = s.find('e');
  if (e != std::string::npos) {
    const int exp = std::stoi(s.substr(e + 1));
    if (exp == 15) {  // d.ddde+15 -> fixed with ".0"
      std::string mant = s.substr(0, e), sign;
      if (mant[0] == '-') sign = "-", mant.erase(0, 1);
      std::string digits = mant;
      digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
      digits.resize(16, '0');
      return sign + digits + ".0";
    }
    if (s.find('.') == std::string::npos || s.find('.') > e) return s;  // 1e+16
  } else if (s.find('.') == std::string::npos) {
    s += ".0";
  }
  return s;
}
inline std::string str_repr(const std::string& s) {
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = use_double ? '"' : '\'';
  std::string out(1, q);
  for (char32_t c : utf8::decode(s)) {
    if (c == static_cast<char32_t>(q) || c == '\\') out.push_back('\\'), out.push_back(static_cast<char>(c));
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F || (c >= 0xDC80 && c <= 0xDCFF)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c >= 0xDC80 ? c - 0xDC00 : c));
      out += buf;
    } else {
      utf8::append(out, c);
    }
  }
  return out + q;
}
inline std::string repr(const json& j);
inline std::string str(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  return repr(j);
}
inline std::string repr(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "None";
    case json::value_t::boolean: return j.get<bool>() ? "True" : "False";
    case json::value_t::number_float: return float_repr(j.get<double>());
    case json::value_t::string: return str_repr(j.get_ref<const std::string&>());
    case json::value_t::array: {
      std::string s = "[";
      for (size_t i = 0; i < j.size(); ++i) s += (i ? ", " : "") + repr(j[i]);
      return s + "]";
    }
    case json::value_t::object: {
      std::string s = "{";
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it, first = false)
        s += (first ? "" : ", ") + str_repr(it.key()) + ": " + repr(it.value());
      return s + "}";
    }
    default: return j.dump();  // integers
  }
}
inline void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : utf8::decode(s)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default: {
        char buf[16];
        if (c < 0x20 || (ensure_ascii && c > 0x7E && !(c >= 0xDC80 && c <= 0xDCFF))) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)), static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
          } else {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          }
          out += buf;
        } else {
          utf8::append(out, c);
        }
      }
    }
  }
  out.push_back('"');
}
struct DumpOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  int indent = -1;  // -1: None
  std::string indent_str;
  std::string item_sep = ", ", key_sep = ": ";
};
// Python's json.dumps.
inline void dumps(std::string& out, const json& j, const DumpOptions& o, int level, size_t max_size) {
  if (out.size() > max_size) throw TemplateError("tojson: output larger than " + std::to_string(max_size) + " bytes");
  auto newline = [&](int lvl) {
    if (o.indent < 0) return;
    out.push_back('\n');
    for (int i = 0; i < lvl; ++i) out += o.indent_str;
  };
  switch (j.type()) {
    case json::value_t::null: out += "null"; return;
    case json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case json::value_t::number_float: {
      const double d = j.get<double>();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : float_repr(d);
      return;
    }
    case json::value_t::string: json_string(out, j.get_ref<const std::string&>(), o.ensure_ascii); return;
    case json::value_t::array: {
      if (j.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (size_t i = 0; i < j.size(); ++i) {
        if (i) out += o.indent < 0 ? o.item_sep : o.item_sep.substr(0, o.item_sep.find_last_not_of(' ') + 1);
        newline(level + 1);
        dumps(out, j[i], o, level + 1, max_size);
      }
      newline(level);
      out.push_back(']');
      return;
    }
    case json::value_t::object: {
      if (j.empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<const std::string*, const json*>> items;
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(&it.key(), &it.value());
      if (o.sort_keys) std::stable_sort(items.begin(), items.end(), [](auto& a, auto& b) { return *a.first < *b.first; });
      out.push_back('{');
      bool first = true;
      for (const auto& [k, v] : items) {
        if (!first) out += o.indent < 0 ? o.item_sep : o.item_sep.substr(0, o.item_sep.find_last_not_of(' ') + 1);
        first = false;
        newline(level + 1);
        json_string(out, *k, o.ensure_ascii);
        out += o.key_sep;
        dumps(out, *v, o, level + 1, max_size);
      }
      newline(level);
      out.push_back('}');
      return;
    }
    default: out += j.dump();
  }
}
}  // namespace py

// ------------------------------------------------------------------------------------ interpreter
struct Span {  // a {% generation %} block's output: [begin, end) bytes of the rendering
  size_t begin, end;
};

class Template;

namespace detail {

struct Scope {
  std::map<std::string, Value, std::less<>> vars;
  Scope* parent = nullptr;
  const Value* find(std::string_view n) const {
    for (const Scope* s = this; s != nullptr; s = s->parent)
      if (auto it = s->vars.find(n); it != s->vars.end()) return &it->second;
    return nullptr;
  }
};

// Values nest at most kMaxNesting deep (see Renderer::nestable).
constexpr int kMaxNesting = 200;
inline int nesting(const json& j, int cap) {
  if (!j.is_structured() || cap <= 0) return 0;
  int deepest = 0;
  for (const auto& x : j) deepest = std::max(deepest, nesting(x, cap - 1));
  return deepest + 1;
}

struct LoopControl {
  enum Kind { none, brk, cont } kind = none;
};

class Renderer {
 public:
  Renderer(const std::string& name, const Limits& limits, bool neighbours) : name_(name), limits_(limits), neighbours_(neighbours) {}

  std::string out;
  std::vector<Span> generation_spans;

  void render(const Body& body, Scope& scope) {
    LoopControl ctl;
    exec(body, scope, ctl);
    if (ctl.kind != LoopControl::none) throw TemplateError(name_ + ": 'break' or 'continue' outside a loop");
  }

 private:
  const std::string& name_;
  const Limits& limits_;
  bool neighbours_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  int line_ = 0, col_ = 0;  // where the node being evaluated is, for errors

  [[noreturn]] void fail(const std::string& what) const {
    throw TemplateError(name_ + ":" + std::to_string(line_) + ":" + std::to_string(col_) + ": " + what);
  }
  void step(int line, int col) {
    line_ = line, col_ = col;
    if (++steps_ > limits_.max_steps)
      fail("stopped after " + std::to_string(limits_.max_steps) + " steps (a loop that does not end?)");
  }
  void check_size(size_t n, const char* what) const {
    if (n > limits_.max_output) fail(std::string(what) + " larger than " + std::to_string(limits_.max_output) + " bytes");
  }
  void emit(std::string_view s, std::string* target) {
    auto& o = target != nullptr ? *target : out;
    check_size(o.size() + s.size(), "output");
    o.append(s);
  }

  std::string* capture_ = nullptr;  // set/filter/call blocks render into a string

  // ------------------------------------------------------------------ statements
  void exec(const Body& body, Scope& scope, LoopControl& ctl) {
    for (const auto& s : body) {
      exec(*s, scope, ctl);
      if (ctl.kind != LoopControl::none) return;
    }
  }
  std::string render_to_string(const Body& body, Scope& scope) {
    std::string buf;
    auto* saved = capture_;
    capture_ = &buf;
    LoopControl ctl;
    exec(body, scope, ctl);
    capture_ = saved;
    if (ctl.kind != LoopControl::none) fail("'break' or 'continue' outside a loop");
    return buf;
  }

  void exec(const Stmt& s, Scope& scope, LoopControl& ctl) {
    step(s.line, s.col);
    switch (s.kind) {
      case Stmt::Kind::text: emit(s.text, capture_); return;
      case Stmt::Kind::output: emit(to_str(eval(*s.expr, scope)), capture_); return;
      case Stmt::Kind::if_: {
        if (truthy(eval(*s.expr, scope))) return exec(s.body, scope, ctl);
        for (const auto& [cond, body] : s.elifs)
          if (truthy(eval(*cond, scope))) return exec(body, scope, ctl);
        return exec(s.else_body, scope, ctl);
      }
      case Stmt::Kind::for_: return exec_for(s, scope);
      case Stmt::Kind::set: {
        Value v = eval(*s.expr, scope);
        step(s.line, s.col);
        if (s.attr_target) {
          const Value* target = scope.find(s.targets[0]);
          if (target == nullptr || target->kind != Value::Kind::ns)
            fail("cannot assign attribute '" + s.targets[1] + "' on '" + s.targets[0] + "': not a namespace");
          (*target->ns)[s.targets[1]] = to_json(v, "a namespace attribute");
        } else if (s.targets.size() == 1) {
          scope.vars[s.targets[0]] = std::move(v);
        } else {
          const auto items = iterate(v);
          if (items.size() != s.targets.size())
            fail("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(s.targets.size()) + " names");
          for (size_t i = 0; i < items.size(); ++i) scope.vars[s.targets[i]] = items[i];
        }
        return;
      }
      case Stmt::Kind::set_block: {
        Value v = Value::of(render_to_string(s.body, scope));
        if (s.filter) v = apply_filters(*s.filter, std::move(v), scope);
        scope.vars[s.targets[0]] = std::move(v);
        return;
      }
      case Stmt::Kind::filter_block: {
        Value v = Value::of(render_to_string(s.body, scope));
        emit(to_str(apply_filters(*s.filter, std::move(v), scope)), capture_);
        return;
      }
      case Stmt::Kind::macro: scope.vars[s.name] = make_macro(s, scope); return;
      case Stmt::Kind::call_block: {
        // caller() renders the block body; the call's arguments are evaluated as for any call.
        Value caller = make_macro(s, scope);
        const Expr& call = *s.expr;
        Value callee = eval(*call.a, scope);
        CallArgs args = eval_args(call, scope);
        args.named.emplace_back("caller", std::move(caller));
        emit(to_str(invoke(callee, args)), capture_);
        return;
      }
      case Stmt::Kind::generation: {
        if (capture_ != nullptr) return exec(s.body, scope, ctl);
        const size_t begin = out.size();
        exec(s.body, scope, ctl);
        generation_spans.push_back({begin, out.size()});
        return;
      }
      case Stmt::Kind::break_: ctl.kind = LoopControl::brk; return;
      case Stmt::Kind::continue_: ctl.kind = LoopControl::cont; return;
    }
  }

  void exec_for(const Stmt& s, Scope& scope) {
    const Value seq = eval(*s.expr, scope);
    std::vector<Value> items = iterate(seq);
    if (s.cond) {  // `for x in xs if cond`: filtered before loop.* is computed
      std::vector<Value> kept;
      for (auto& it : items) {
        Scope inner{{}, &scope};
        bind_targets(s, inner, it);
        if (truthy(eval(*s.cond, inner))) kept.push_back(std::move(it));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Scope inner{{}, &scope};
      LoopControl ctl;
      exec(s.else_body, inner, ctl);
      return;
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      step(s.line, s.col);  // an empty body still costs a step per iteration
      Scope inner{{}, &scope};
      bind_targets(s, inner, items[static_cast<size_t>(i)]);
      json loop = {{"index", i + 1}, {"index0", i}, {"revindex", n - i}, {"revindex0", n - i - 1},
                   {"first", i == 0}, {"last", i == n - 1}, {"length", n}, {"depth", 1}, {"depth0", 0}};
      if (neighbours_) {  // copies; only for templates that name loop.previtem or loop.nextitem
        if (i > 0 && items[static_cast<size_t>(i - 1)].is_data()) loop["previtem"] = *items[static_cast<size_t>(i - 1)].j;
        if (i + 1 < n && items[static_cast<size_t>(i + 1)].is_data()) loop["nextitem"] = *items[static_cast<size_t>(i + 1)].j;
      }
      inner.vars["loop"] = Value::of(std::move(loop));
      LoopControl ctl;
      exec(s.body, inner, ctl);
      if (ctl.kind == LoopControl::brk) break;
    }
  }

  void bind_targets(const Stmt& s, Scope& inner, const Value& item) {
    if (s.targets.size() == 1) {
      inner.vars[s.targets[0]] = item;
      return;
    }
    const auto parts = iterate(item);
    if (parts.size() != s.targets.size())
      fail("cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(s.targets.size()) + " loop variables");
    for (size_t k = 0; k < parts.size(); ++k) inner.vars[s.targets[k]] = parts[k];
  }

  Value make_macro(const Stmt& s, Scope& defining) {
    // The macro sees the scope it was defined in (as Jinja's closures over template variables).
    Scope* home = &defining;
    const Stmt* def = &s;
    return Value::function([this, home, def](CallArgs& args) -> Value {
      if (++depth_ > limits_.max_depth) {
        --depth_;
        fail("macro calls nested deeper than " + std::to_string(limits_.max_depth));
      }
      Scope local{{}, home};
      const auto& params = def->params;
      if (args.positional.size() > params.size())
        fail((def->name.empty() ? std::string("caller") : "macro '" + def->name + "'") + " takes " +
             std::to_string(params.size()) + " arguments, got " + std::to_string(args.positional.size()));
      for (size_t i = 0; i < params.size(); ++i) {
        if (i < args.positional.size()) local.vars[params[i].first] = args.positional[i];
        else if (params[i].second) local.vars[params[i].first] = eval(*params[i].second, local);
        else local.vars[params[i].first] = Value::undefined(params[i].first);
      }
      for (auto& kv : args.named) {
        const std::string& key = kv.first;
        const bool known = std::any_of(params.begin(), params.end(), [&](auto& p) { return p.first == key; });
        if (!known && key != "caller") fail("macro '" + def->name + "' has no parameter '" + key + "'");
        local.vars[key] = kv.second;
      }
      std::string text;
      try {
        text = render_to_string(def->body, local);
      } catch (...) {
        --depth_;
        throw;
      }
      --depth_;
      return Value::of(std::move(text));
    });
  }

  // ----------------------------------------------------------------- expressions
 public:
  Value eval(const Expr& e, Scope& scope) {
    step(e.line, e.col);
    switch (e.kind) {
      case Expr::Kind::literal: {
        Value v;
        v.kind = Value::Kind::data;
        v.root = e.literal;
        v.j = e.literal.get();
        return v;
      }
      case Expr::Kind::name: {
        if (const Value* v = scope.find(e.name)) return *v;
        return Value::undefined(e.name);
      }
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        json arr = json::array();
        for (const auto& it : e.items) arr.push_back(nestable(to_json(eval(*it, scope), "a list")));
        return Value::of(std::move(arr));
      }
      case Expr::Kind::dict: {
        json obj = json::object();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          const Value k = eval(*e.items[i], scope);
          if (!k.is_string()) fail("dictionary keys must be strings here, got " + type_name(k));
          obj[k.str()] = nestable(to_json(eval(*e.items[i + 1], scope), "a dictionary"));
        }
        return Value::of(std::move(obj));
      }
      case Expr::Kind::attr: {
        Value obj = eval(*e.a, scope);
        line_ = e.line, col_ = e.col;
        return get_attr(obj, e.name, *e.a);
      }
      case Expr::Kind::item: {
        Value obj = eval(*e.a, scope);
        Value key = eval(*e.b, scope);
        line_ = e.line, col_ = e.col;
        return get_item(obj, key, *e.a);
      }
      case Expr::Kind::slice: return eval_slice(e, scope);
      case Expr::Kind::call: {
        Value callee = eval(*e.a, scope);
        CallArgs args = eval_args(e, scope);
        line_ = e.line, col_ = e.col;
        if (callee.is_undefined()) fail("'" + callee.name + "' is undefined (called as a function)");
        return invoke(callee, args);
      }
      case Expr::Kind::filter: return apply_filters(e, Value(), scope);
      case Expr::Kind::test: {
        Value v = eval(*e.a, scope);
        CallArgs args = eval_args(e, scope);
        line_ = e.line, col_ = e.col;
        const bool r = test(e.name, v, args);
        return Value::of(e.negated ? !r : r);
      }
      case Expr::Kind::unary: {
        Value v = eval(*e.a, scope);
        line_ = e.line, col_ = e.col;
        if (e.name == "not") return Value::of(!truthy(v));
        if (!v.is_data() || !(v.j->is_number() || v.j->is_boolean())) fail("bad operand type for unary " + e.name + ": " + type_name(v));
        if (e.name == "+") return v.j->is_boolean() ? Value::of(static_cast<int64_t>(v.j->get<bool>())) : v;
        if (v.j->is_number_float()) return Value::of(-v.j->get<double>());
        const int64_t x = as_int(v);
        if (x == INT64_MIN) fail("integer overflow");
        return Value::of(-x);
      }
      case Expr::Kind::binary: return eval_binary(e, scope);
      case Expr::Kind::cond: {
        if (truthy(eval(*e.c, scope))) return eval(*e.a, scope);
        return e.b ? eval(*e.b, scope) : Value::undefined("the else branch of a conditional expression");
      }
    }
    fail("internal: unknown expression");
  }

 private:
  CallArgs eval_args(const Expr& e, Scope& scope) {
    CallArgs args;
    for (const auto& it : e.items) args.positional.push_back(eval(*it, scope));
    for (const auto& [k, v] : e.kwargs) args.named.emplace_back(k, eval(*v, scope));
    return args;
  }
  Value invoke(const Value& callee, CallArgs& args) {
    if (callee.kind != Value::Kind::function) fail(type_name(callee) + " object is not callable");
    return (*callee.fn)(args);
  }

  // ------------------------------------------------------------------ helpers
 public:
  static std::string type_name(const Value& v) {
    switch (v.kind) {
      case Value::Kind::undefined: return "Undefined";
      case Value::Kind::function: return "function";
      case Value::Kind::ns: return "Namespace";
      case Value::Kind::data: break;
    }
    switch (v.j->type()) {
      case json::value_t::null: return "NoneType";
      case json::value_t::boolean: return "bool";
      case json::value_t::string: return "str";
      case json::value_t::array: return "list";
      case json::value_t::object: return "dict";
      case json::value_t::number_float: return "float";
      default: return "int";
    }
  }
  static bool truthy(const Value& v) {
    if (v.kind == Value::Kind::undefined) return false;
    if (v.kind != Value::Kind::data) return true;
    const json& j = *v.j;
    switch (j.type()) {
      case json::value_t::null: return false;
      case json::value_t::boolean: return j.get<bool>();
      case json::value_t::string: return !j.get_ref<const std::string&>().empty();
      case json::value_t::array:
      case json::value_t::object: return !j.empty();
      case json::value_t::number_float: return j.get<double>() != 0.0;
      default: return j.get<int64_t>() != 0;
    }
  }
  std::string to_str(const Value& v) const {
    switch (v.kind) {
      case Value::Kind::undefined: return "";
      case Value::Kind::function: return "<function>";
      case Value::Kind::ns: return "<Namespace " + py::repr(*v.ns) + ">";
      case Value::Kind::data: return py::str(*v.j);
    }
    return "";
  }
  // Values nest at most kMaxNesting deep, so that copying, printing and comparing them (all
  // recursive) cannot run out of stack: only list and dict literals wrap a value in a new level.
  json nestable(json j) const {
    if (nesting(j, kMaxNesting) >= kMaxNesting) fail("values nested deeper than " + std::to_string(kMaxNesting));
    return j;
  }
  json to_json(const Value& v, const char* where) const {
    if (v.kind == Value::Kind::data) return *v.j;
    if (v.kind == Value::Kind::undefined) return nullptr;  // only reachable through defaults; Jinja keeps Undefined
    fail(std::string("cannot store a ") + type_name(v) + " in " + where);
  }

 private:
  static bool is_intlike(const Value& v) { return v.is_data() && (v.j->is_number_integer() || v.j->is_boolean()); }
  static int64_t as_int(const Value& v) {
    if (v.j->is_boolean()) return v.j->get<bool>() ? 1 : 0;
    if (v.j->is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(v.j->get<uint64_t>(), INT64_MAX));
    return v.j->get<int64_t>();
  }
  static bool is_numeric(const Value& v) { return v.is_data() && (v.j->is_number() || v.j->is_boolean()); }
  static double as_double(const Value& v) { return v.j->is_number_float() ? v.j->get<double>() : static_cast<double>(as_int(v)); }

  void require_defined(const Value& v) const {
    if (v.is_undefined()) fail("'" + v.name + "' is undefined");
  }

  static bool equal(const Value& a, const Value& b) {
    if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
    if (a.kind != Value::Kind::data || b.kind != Value::Kind::data) return a.fn == b.fn && a.ns == b.ns && a.kind == b.kind;
    return json_equal(*a.j, *b.j);
  }
  static bool json_equal(const json& a, const json& b) {
    const bool an = a.is_number() || a.is_boolean(), bn = b.is_number() || b.is_boolean();
    if (an && bn) {
      if (a.is_number_float() || b.is_number_float()) {
        auto d = [](const json& x) { return x.is_number_float() ? x.get<double>() : x.is_boolean() ? (x.get<bool>() ? 1.0 : 0.0) : static_cast<double>(x.get<int64_t>()); };
        return d(a) == d(b);
      }
      auto i = [](const json& x) { return x.is_boolean() ? (x.get<bool>() ? 1 : 0) : x.get<int64_t>(); };
      return i(a) == i(b);
    }
    if (a.type() != b.type()) return false;
    if (a.is_array()) {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (!json_equal(a[i], b[i])) return false;
      return true;
    }
    if (a.is_object()) {
      if (a.size() != b.size()) return false;
      for (auto it = a.begin(); it != a.end(); ++it) {
        auto f = b.find(it.key());
        if (f == b.end() || !json_equal(it.value(), *f)) return false;
      }
      return true;
    }
    return a == b;
  }
  int compare(const Value& a, const Value& b, const std::string& op) const {
    if (is_numeric(a) && is_numeric(b)) {
      if (is_intlike(a) && is_intlike(b)) return as_int(a) < as_int(b) ? -1 : as_int(a) > as_int(b) ? 1 : 0;
      const double x = as_double(a), y = as_double(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) return a.str().compare(b.str()) < 0 ? -1 : a.str() == b.str() ? 0 : 1;
    if (a.is_list() && b.is_list()) {
      for (size_t i = 0; i < std::min(a.j->size(), b.j->size()); ++i) {
        if (json_equal((*a.j)[i], (*b.j)[i])) continue;
        return compare(a.child((*a.j)[i]), b.child((*b.j)[i]), op);
      }
      return a.j->size() < b.j->size() ? -1 : a.j->size() > b.j->size() ? 1 : 0;
    }
    fail("'" + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
  }
  bool contains(const Value& container, const Value& item) const {
    if (container.is_undefined()) return false;  // Undefined iterates as empty
    if (container.is_string()) {
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not " + type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    }
    if (container.is_list()) {
      for (const auto& x : *container.j)
        if (item.is_data() && json_equal(x, *item.j)) return true;
      return false;
    }
    if (container.is_dict()) return item.is_string() && container.j->contains(item.str());
    if (container.kind == Value::Kind::ns) return item.is_string() && container.ns->contains(item.str());
    fail("argument of type '" + type_name(container) + "' is not iterable");
  }

  Value eval_binary(const Expr& e, Scope& scope) {
    if (e.name == "and") {
      Value l = eval(*e.a, scope);
      return truthy(l) ? eval(*e.b, scope) : l;
    }
    if (e.name == "or") {
      Value l = eval(*e.a, scope);
      return truthy(l) ? l : eval(*e.b, scope);
    }
    Value l = eval(*e.a, scope);
    Value r = eval(*e.b, scope);
    line_ = e.line, col_ = e.col;
    const std::string& op = e.name;
    if (op == "==") return Value::of(equal(l, r));
    if (op == "!=") return Value::of(!equal(l, r));
    if (op == "in") return Value::of(contains(r, l));
    if (op == "not in") return Value::of(!contains(r, l));
    if (op == "~") {
      std::string s = to_str(l);
      const std::string t = to_str(r);
      check_size(s.size() + t.size(), "string");
      return Value::of(s + t);
    }
    require_defined(l);
    require_defined(r);
    if (op == "<") return Value::of(compare(l, r, op) < 0);
    if (op == ">") return Value::of(compare(l, r, op) > 0);
    if (op == "<=") return Value::of(compare(l, r, op) <= 0);
    if (op == ">=") return Value::of(compare(l, r, op) >= 0);
    return arithmetic(op, l, r);
  }

  Value arithmetic(const std::string& op, const Value& l, const Value& r) {
    auto unsupported = [&]() -> Value {
      fail("unsupported operand type(s) for " + op + ": '" + type_name(l) + "' and '" + type_name(r) + "'");
    };
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        check_size(l.str().size() + r.str().size(), "string");
        return Value::of(l.str() + r.str());
      }
      if (l.is_list() && r.is_list()) {
        check_size((l.j->size() + r.j->size()) * sizeof(json), "list");
        json out = *l.j;
        for (const auto& x : *r.j) out.push_back(x);
        return Value::of(std::move(out));
      }
    }
    if (op == "*" && (l.is_string() || l.is_list() || r.is_string() || r.is_list())) {
      const Value& seq = l.is_string() || l.is_list() ? l : r;
      const Value& count = &seq == &l ? r : l;
      if (!is_intlike(count)) return unsupported();
      const int64_t n = std::max<int64_t>(0, as_int(count));
      const size_t unit = seq.is_string() ? seq.str().size() : seq.j->size() * sizeof(json);
      if (unit != 0 && static_cast<uint64_t>(n) > limits_.max_output / unit) check_size(limits_.max_output + 1, seq.is_string() ? "string" : "list");
      if (seq.is_string()) {
        std::string s;
        for (int64_t i = 0; i < n; ++i) s += seq.str();
        return Value::of(std::move(s));
      }
      json out = json::array();
      for (int64_t i = 0; i < n; ++i)
        for (const auto& x : *seq.j) out.push_back(x);
      return Value::of(std::move(out));
    }
    if (!is_numeric(l) || !is_numeric(r)) return unsupported();
    if (op == "/") {
      if (as_double(r) == 0.0) fail("division by zero");
      return Value::of(as_double(l) / as_double(r));
    }
    if (is_intlike(l) && is_intlike(r)) {
      const int64_t a = as_int(l), b = as_int(r);
      int64_t res = 0;
      if (op == "+" && !__builtin_add_overflow(a, b, &res)) return Value::of(res);
      if (op == "-" && !__builtin_sub_overflow(a, b, &res)) return Value::of(res);
      if (op == "*" && !__builtin_mul_overflow(a, b, &res)) return Value::of(res);
      if (op == "//" || op == "%") {
        if (b == 0) fail("integer division or modulo by zero");
        if (a == INT64_MIN && b == -1) fail("integer overflow");
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) --q, m += b;  // Python floors
        return Value::of(op == "//" ? q : m);
      }
      if (op == "**") {
        if (b < 0) return Value::of(std::pow(static_cast<double>(a), static_cast<double>(b)));
        int64_t acc = 1;
        for (int64_t i = 0; i < b; ++i) {
          if (__builtin_mul_overflow(acc, a, &acc)) fail("integer overflow in **");
          if (acc == 0 || acc == 1) break;
          if (acc == -1) {
            acc = ((b - i - 1) % 2 == 0) ? -1 : 1;
            break;
          }
        }
        return Value::of(acc);
      }
      fail("integer overflow in " + op);
    }
    const double a = as_double(l), b = as_double(r);
    if (op == "+") return Value::of(a + b);
    if (op == "-") return Value::of(a - b);
    if (op == "*") return Value::of(a * b);
    if (op == "**") return Value::of(std::pow(a, b));
    if (b == 0.0) fail("float division by zero");
    if (op == "//") return Value::of(std::floor(a / b));
    if (op == "%") {
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      return Value::of(m);
    }
    return unsupported();
  }

  // Python sequence of a value: list items, dict keys, string characters.
  std::vector<Value> iterate(const Value& v) const {
    std::vector<Value> out;
    if (v.is_undefined()) return out;  // iterating Undefined gives nothing
    if (v.is_list()) {
      for (const auto& x : *v.j) out.push_back(v.child(x));
    } else if (v.is_dict()) {
      for (auto it = v.j->begin(); it != v.j->end(); ++it) out.push_back(Value::of(it.key()));
    } else if (v.is_string()) {
      for (char32_t c : utf8::decode(v.str())) out.push_back(Value::of(utf8::encode(std::u32string(1, c))));
    } else if (v.kind == Value::Kind::ns) {
      fail("'Namespace' object is not iterable");
    } else {
      fail("'" + type_name(v) + "' object is not iterable");
    }
    return out;
  }

  // obj.name: a method of the value when there is one (getattr first), else its item.
  Value get_attr(const Value& obj, const std::string& name, const Expr& where) {
    if (obj.is_undefined()) fail("'" + obj.name + "' is undefined (looking up ." + name + ")");
    if (obj.kind == Value::Kind::ns) {
      if (auto it = obj.ns->find(name); it != obj.ns->end()) return Value::of(*it);
      return Value::undefined(name);
    }
    if (obj.kind == Value::Kind::function) return Value::undefined(name);
    if (Value m = method(obj, name); m.kind == Value::Kind::function) return m;
    if (obj.is_dict()) {
      if (auto it = obj.j->find(name); it != obj.j->end()) return obj.child(*it);
      return Value::undefined(describe(where) + "." + name);
    }
    if (obj.is_list() && !name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) return get_item(obj, Value::of(std::stoll(name)), where);
    return Value::undefined(describe(where) + "." + name);
  }
  // obj[key]: the item first, else the attribute.
  Value get_item(const Value& obj, const Value& key, const Expr& where) {
    if (obj.is_undefined()) fail("'" + obj.name + "' is undefined (subscripted)");
    if (obj.is_dict()) {
      if (key.is_string()) {
        if (auto it = obj.j->find(key.str()); it != obj.j->end()) return obj.child(*it);
        if (Value m = method(obj, key.str()); m.kind == Value::Kind::function) return m;
      }
      return Value::undefined(describe(where) + "[" + to_str(key) + "]");
    }
    if (obj.kind == Value::Kind::ns) {
      if (key.is_string()) return get_attr(obj, key.str(), where);
      return Value::undefined("namespace item");
    }
    if (obj.is_list() || obj.is_string()) {
      if (!is_intlike(key)) {
        if (key.is_string()) {
          if (Value m = method(obj, key.str()); m.kind == Value::Kind::function) return m;
        }
        return Value::undefined(describe(where) + "[" + to_str(key) + "]");
      }
      int64_t i = as_int(key);
      if (obj.is_list()) {
        const auto n = static_cast<int64_t>(obj.j->size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined(describe(where) + "[" + std::to_string(as_int(key)) + "]");
        return obj.child((*obj.j)[static_cast<size_t>(i)]);
      }
      const auto cps = utf8::decode(obj.str());
      const auto n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined(describe(where) + "[" + std::to_string(as_int(key)) + "]");
      return Value::of(utf8::encode(std::u32string(1, cps[static_cast<size_t>(i)])));
    }
    return Value::undefined(describe(where) + "[" + to_str(key) + "]");
  }
  static std::string describe(const Expr& e) {
    if (e.kind == Expr::Kind::name) return e.name;
    if (e.kind == Expr::Kind::attr) return describe(*e.a) + "." + e.name;
    return "value";
  }

  Value eval_slice(const Expr& e, Scope& scope) {
    Value obj = eval(*e.a, scope);
    std::optional<int64_t> part[3];
    for (int k = 0; k < 3; ++k) {
      if (!e.items[static_cast<size_t>(k)]) continue;
      Value v = eval(*e.items[static_cast<size_t>(k)], scope);
      if (v.is_none()) continue;
      if (!is_intlike(v)) fail("slice indices must be integers or None, got " + type_name(v));
      part[k] = as_int(v);
    }
    line_ = e.line, col_ = e.col;
    require_defined(obj);
    const int64_t st = part[2].value_or(1);
    if (st == 0) fail("slice step cannot be zero");
    auto pick = [&](int64_t n) {  // Python's slice.indices
      std::vector<int64_t> idx;
      auto clamp = [&](std::optional<int64_t> x, int64_t def) {
        if (!x) return def;
        int64_t v = *x < 0 ? *x + n : *x;
        if (st > 0) return std::clamp<int64_t>(v, 0, n);
        return std::clamp<int64_t>(v, -1, n - 1);
      };
      const int64_t b = clamp(part[0], st > 0 ? 0 : n - 1), en = clamp(part[1], st > 0 ? n : -1);
      for (int64_t i = b; st > 0 ? i < en : i > en; i += st) idx.push_back(i);
      return idx;
    };
    if (obj.is_list()) {
      json out = json::array();
      for (auto i : pick(static_cast<int64_t>(obj.j->size()))) out.push_back((*obj.j)[static_cast<size_t>(i)]);
      return Value::of(std::move(out));
    }
    if (obj.is_string()) {
      const auto cps = utf8::decode(obj.str());
      std::u32string out;
      for (auto i : pick(static_cast<int64_t>(cps.size()))) out.push_back(cps[static_cast<size_t>(i)]);
      return Value::of(utf8::encode(out));
    }
    fail("'" + type_name(obj) + "' object is not subscriptable");
  }

  // ----------------------------------------------------------- methods of values
  static std::optional<std::u32string> opt_chars(const CallArgs& a, size_t i) {
    if (a.positional.size() <= i || a.positional[i].is_none()) return std::nullopt;
    return utf8::decode(a.positional[i].str());
  }
  static std::string strip(const std::string& s, const std::optional<std::u32string>& chars, bool left, bool right) {
    auto cps = utf8::decode(s);
    auto strip_it = [&](char32_t c) { return chars ? chars->find(c) != std::u32string::npos : utf8::is_space(c); };
    size_t b = 0, e = cps.size();
    if (left) while (b < e && strip_it(cps[b])) ++b;
    if (right) while (e > b && strip_it(cps[e - 1])) --e;
    return utf8::encode(std::u32string_view(cps).substr(b, e - b));
  }
  static std::string ascii_case(std::string s, bool upper) {
    for (auto& c : s)
      if (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) c = static_cast<char>(c ^ 0x20);
    return s;
  }
  std::vector<std::string> split(const std::string& s, const std::optional<std::string>& sep, int64_t maxsplit) const {
    std::vector<std::string> parts;
    if (!sep) {  // runs of whitespace, none empty
      const auto cps = utf8::decode(s);
      size_t i = 0;
      while (i < cps.size()) {
        while (i < cps.size() && utf8::is_space(cps[i])) ++i;
        if (i >= cps.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
          size_t e = cps.size();
          while (e > i && utf8::is_space(cps[e - 1])) --e;
          parts.push_back(utf8::encode(std::u32string_view(cps).substr(i, e - i)));
          break;
        }
        size_t j = i;
        while (j < cps.size() && !utf8::is_space(cps[j])) ++j;
        parts.push_back(utf8::encode(std::u32string_view(cps).substr(i, j - i)));
        i = j;
      }
      return parts;
    }
    if (sep->empty()) fail("empty separator");
    size_t from = 0;
    while (true) {
      const size_t at = maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit ? std::string::npos : s.find(*sep, from);
      if (at == std::string::npos) {
        parts.push_back(s.substr(from));
        return parts;
      }
      parts.push_back(s.substr(from, at - from));
      from = at + sep->size();
    }
  }
  std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) const {
    std::string out;
    if (from.empty()) {  // Python inserts `to` between characters
      const auto cps = utf8::decode(s);
      int64_t done = 0;
      for (size_t i = 0; i <= cps.size(); ++i) {
        if (count < 0 || done < count) out += to, ++done;
        if (i < cps.size()) utf8::append(out, cps[i]);
        check_size(out.size(), "string");
      }
      return out;
    }
    size_t from_pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      const size_t at = s.find(from, from_pos);
      if (at == std::string::npos) break;
      out.append(s, from_pos, at - from_pos).append(to);
      check_size(out.size(), "string");
      from_pos = at + from.size();
      ++done;
    }
    return out + s.substr(from_pos);
  }
  const std::string& str_arg(const CallArgs& a, size_t i, const char* fn) const {
    if (a.positional.size() <= i || !a.positional[i].is_string())
      fail(std::string(fn) + "() argument " + std::to_string(i + 1) + " must be a string");
    return a.positional[i].str();
  }

  Value method(const Value& obj, const std::string& name) {
    auto bind = [&](auto f) {
      Value self = obj;
      return Value::function([this, self, f](CallArgs& a) -> Value { return f(self, a); });
    };
    if (obj.is_string()) {
      if (name == "startswith" || name == "endswith")
        return bind([this, name](const Value& self, CallArgs& a) {
          const std::string& s = self.str();
          std::vector<std::string> prefixes;
          if (!a.positional.empty() && a.positional[0].is_list()) {
            for (const auto& x : *a.positional[0].j)
              if (x.is_string()) prefixes.push_back(x.get<std::string>());
          } else {
            prefixes.push_back(str_arg(a, 0, name.c_str()));
          }
          for (const auto& p : prefixes)
            if (p.size() <= s.size() && (name == "startswith" ? s.compare(0, p.size(), p) : s.compare(s.size() - p.size(), p.size(), p)) == 0)
              return Value::of(true);
          return Value::of(false);
        });
      if (name == "strip" || name == "lstrip" || name == "rstrip")
        return bind([name](const Value& self, CallArgs& a) {
          return Value::of(strip(self.str(), opt_chars(a, 0), name != "rstrip", name != "lstrip"));
        });
      if (name == "split" || name == "rsplit")
        return bind([this](const Value& self, CallArgs& a) {
          std::optional<std::string> sep;
          int64_t maxsplit = -1;
          if (!a.positional.empty() && !a.positional[0].is_none()) sep = str_arg(a, 0, "split");
          if (a.positional.size() > 1 && is_intlike(a.positional[1])) maxsplit = as_int(a.positional[1]);
          for (auto& [k, v] : a.named) {
            if (k == "sep" && v.is_string()) sep = v.str();
            if (k == "maxsplit" && is_intlike(v)) maxsplit = as_int(v);
          }
          json out = json::array();
          for (auto& p : split(self.str(), sep, maxsplit)) out.push_back(std::move(p));
          return Value::of(std::move(out));
        });
      if (name == "upper" || name == "lower")
        return bind([name](const Value& self, CallArgs&) { return Value::of(ascii_case(self.str(), name == "upper")); });
      if (name == "replace")
        return bind([this](const Value& self, CallArgs& a) {
          const int64_t count = a.positional.size() > 2 && is_intlike(a.positional[2]) ? as_int(a.positional[2]) : -1;
          return Value::of(replace(self.str(), str_arg(a, 0, "replace"), str_arg(a, 1, "replace"), count));
        });
      if (name == "find" || name == "count")
        return bind([this, name](const Value& self, CallArgs& a) {
          const std::string& needle = str_arg(a, 0, name.c_str());
          if (name == "find") {
            const size_t at = self.str().find(needle);
            return Value::of(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(utf8::length(self.str().substr(0, at))));
          }
          if (needle.empty()) return Value::of(static_cast<int64_t>(utf8::length(self.str()) + 1));
          int64_t n = 0;
          for (size_t at = self.str().find(needle); at != std::string::npos; at = self.str().find(needle, at + needle.size())) ++n;
          return Value::of(n);
        });
      if (name == "join")
        return bind([this](const Value& self, CallArgs& a) {
          std::string out;
          bool first = true;
          for (const auto& x : iterate(a.positional.empty() ? Value() : a.positional[0])) {
            if (!x.is_string()) fail("join: expected str instance, " + type_name(x) + " found");
            if (!first) out += self.str();
            out += x.str();
            first = false;
            check_size(out.size(), "string");
          }
          return Value::of(std::move(out));
        });
      if (name == "capitalize" || name == "title")
        return bind([this, name](const Value& self, CallArgs&) { return Value::of(name == "title" ? title(self.str()) : capitalize(self.str())); });
      if (name == "isdigit" || name == "isspace")
        return bind([name](const Value& self, CallArgs&) {
          const auto cps = utf8::decode(self.str());
          bool ok = !cps.empty();
          for (auto c : cps) ok = ok && (name == "isdigit" ? (c >= '0' && c <= '9') : utf8::is_space(c));
          return Value::of(ok);
        });
      return {};
    }
    if (obj.is_dict()) {
      if (name == "items" || name == "keys" || name == "values")
        return bind([name](const Value& self, CallArgs&) {
          json out = json::array();
          for (auto it = self.j->begin(); it != self.j->end(); ++it) {
            if (name == "items") out.push_back(json::array({it.key(), it.value()}));
            else if (name == "keys") out.push_back(it.key());
            else out.push_back(it.value());
          }
          return Value::of(std::move(out));
        });
      if (name == "get")
        return bind([this](const Value& self, CallArgs& a) {
          const Value& key = a.positional.empty() ? Value() : a.positional[0];
          if (key.is_string())
            if (auto it = self.j->find(key.str()); it != self.j->end()) return self.child(*it);
          return a.positional.size() > 1 ? a.positional[1] : Value::of(nullptr);
        });
      if (name == "update" || name == "pop" || name == "setdefault" || name == "clear" || name == "popitem")
        return bind([this, name](const Value&, CallArgs&) -> Value { fail("access to attribute '" + name + "' of 'dict' object is unsafe (the sandbox is immutable)"); });
      return {};
    }
    if (obj.is_list()) {
      if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
          name == "reverse" || name == "sort" || name == "clear")
        return bind([this, name](const Value&, CallArgs&) -> Value { fail("access to attribute '" + name + "' of 'list' object is unsafe (the sandbox is immutable)"); });
      if (name == "index" || name == "count")
        return bind([this, name](const Value& self, CallArgs& a) {
          int64_t n = 0;
          for (size_t i = 0; i < self.j->size(); ++i)
            if (!a.positional.empty() && a.positional[0].is_data() && json_equal((*self.j)[i], *a.positional[0].j)) {
              if (name == "index") return Value::of(static_cast<int64_t>(i));
              ++n;
            }
          if (name == "index") fail("value is not in list");
          return Value::of(n);
        });
    }
    return {};
  }
  static std::string capitalize(const std::string& s) {
    std::string out = ascii_case(s, false);
    if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] ^ 0x20);
    return out;
  }
  static std::string title(const std::string& s) {
    std::string out = s;
    bool prev_alpha = false;
    for (auto& c : out) {
      const bool alpha = std::isalpha(static_cast<unsigned char>(c)) != 0;
      if (alpha) c = static_cast<char>(prev_alpha ? std::tolower(c) : std::toupper(c));
      prev_alpha = alpha;
    }
    return out;
  }

  // ------------------------------------------------------------------ filters
  Value apply_filters(const Expr& f, Value input, Scope& scope) {
    // A chain a|f|g is nested filter nodes; the innermost operand is evaluated (or is `input` for blocks).
    Value v = f.a ? (f.a->kind == Expr::Kind::filter && !f.a->a ? apply_filters(*f.a, std::move(input), scope) : eval(*f.a, scope))
                  : std::move(input);
    CallArgs args = eval_args(f, scope);
    line_ = f.line, col_ = f.col;
    return filter(f.name, v, args, scope);
  }
  const Value* named(const CallArgs& a, std::string_view key) const {
    for (const auto& [k, v] : a.named)
      if (k == key) return &v;
    return nullptr;
  }
  const Value* arg(const CallArgs& a, size_t i, std::string_view key) const {
    if (i < a.positional.size()) return &a.positional[i];
    return named(a, key);
  }

 public:
  Value filter(const std::string& name, const Value& v, CallArgs& a, Scope& scope) {
    if (name == "default" || name == "d") {
      const Value* boolean = arg(a, 1, "boolean");
      const bool use = v.is_undefined() || (boolean != nullptr && truthy(*boolean) && !truthy(v));
      if (!use) return v;
      const Value* def = arg(a, 0, "default_value");
      return def != nullptr ? *def : Value::of("");
    }
    if (name == "safe") return v;
    if (name == "string") return Value::of(to_str(v));
    if (name == "length" || name == "count") {
      if (v.is_undefined()) return Value::of(int64_t{0});
      if (v.is_string()) return Value::of(static_cast<int64_t>(utf8::length(v.str())));
      if (v.is_list() || v.is_dict()) return Value::of(static_cast<int64_t>(v.j->size()));
      if (v.kind == Value::Kind::ns) return Value::of(static_cast<int64_t>(v.ns->size()));
      fail("object of type '" + type_name(v) + "' has no len()");
    }
    if (name == "tojson") return Value::of(tojson(v, a));
    if (name == "first" || name == "last") {
      auto items = iterate(v);
      if (items.empty()) return Value::undefined("first/last of an empty sequence");
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") {
      json out = json::array();
      for (const auto& x : iterate(v)) out.push_back(to_json(x, "a list"));
      return Value::of(std::move(out));
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto cps = utf8::decode(v.str());
        std::reverse(cps.begin(), cps.end());
        return Value::of(utf8::encode(cps));
      }
      json out = json::array();
      auto items = iterate(v);
      for (auto it = items.rbegin(); it != items.rend(); ++it) out.push_back(to_json(*it, "a list"));
      return Value::of(std::move(out));
    }
    if (name == "join") {
      const Value* sep = arg(a, 0, "d");
      const Value* attribute = arg(a, 1, "attribute");
      std::string out;
      bool first = true;
      for (const auto& x : iterate(v)) {
        if (!first) out += sep != nullptr ? to_str(*sep) : "";
        first = false;
        out += to_str(attribute != nullptr ? attr_path(x, to_str(*attribute)) : x);
        check_size(out.size(), "string");
      }
      return Value::of(std::move(out));
    }
    if (name == "items") {
      if (v.is_undefined()) return Value::of(json::array());
      if (!v.is_dict()) fail("items: can only get item pairs from a mapping, not " + type_name(v));
      json out = json::array();
      for (auto it = v.j->begin(); it != v.j->end(); ++it) out.push_back(json::array({it.key(), it.value()}));
      return Value::of(std::move(out));
    }
    if (name == "dictsort") {
      if (!v.is_dict()) fail("dictsort: expected a mapping, got " + type_name(v));
      std::vector<std::pair<std::string, json>> kv;
      for (auto it = v.j->begin(); it != v.j->end(); ++it) kv.emplace_back(it.key(), it.value());
      std::stable_sort(kv.begin(), kv.end(), [](auto& x, auto& y) { return ascii_case(x.first, false) < ascii_case(y.first, false); });
      json out = json::array();
      for (auto& [k, x] : kv) out.push_back(json::array({k, x}));
      return Value::of(std::move(out));
    }
    if (name == "upper" || name == "lower") return Value::of(ascii_case(to_str(v), name == "upper"));
    if (name == "capitalize") return Value::of(capitalize(to_str(v)));
    if (name == "title") return Value::of(title(to_str(v)));
    if (name == "trim") {
      const Value* chars = arg(a, 0, "chars");
      return Value::of(strip(to_str(v), chars != nullptr && chars->is_string() ? std::optional(utf8::decode(chars->str())) : std::nullopt, true, true));
    }
    if (name == "replace") {
      const Value* from = arg(a, 0, "old");
      const Value* to = arg(a, 1, "new");
      const Value* count = arg(a, 2, "count");
      if (from == nullptr || to == nullptr) fail("replace needs old and new strings");
      return Value::of(replace(to_str(v), to_str(*from), to_str(*to), count != nullptr && is_intlike(*count) ? as_int(*count) : -1));
    }
    if (name == "int") {
      const Value* def = arg(a, 0, "default");
      if (is_intlike(v)) return Value::of(as_int(v));
      if (v.is_number()) {
        const double d = v.j->get<double>();
        if (std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::of(static_cast<int64_t>(d));
      }
      if (v.is_string()) {
        try {
          size_t used = 0;
          const std::string s = strip(v.str(), std::nullopt, true, true);
          const auto x = std::stoll(s, &used);
          if (used == s.size()) return Value::of(static_cast<int64_t>(x));
        } catch (const std::exception&) {
        }
      }
      return def != nullptr ? *def : Value::of(int64_t{0});
    }
    if (name == "float") {
      if (is_numeric(v)) return Value::of(as_double(v));
      if (v.is_string()) {  // Python's float(): surrounding whitespace allowed, out of range is inf
        const std::string s = strip(v.str(), std::nullopt, true, true);
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size()) return Value::of(d);
      }
      const Value* def = arg(a, 0, "default");
      return def != nullptr ? *def : Value::of(0.0);
    }
    if (name == "abs") {
      if (is_intlike(v)) {
        if (as_int(v) == INT64_MIN) fail("integer overflow");
        return Value::of(std::abs(as_int(v)));
      }
      if (v.is_number()) return Value::of(std::fabs(v.j->get<double>()));
      fail("bad operand type for abs(): '" + type_name(v) + "'");
    }
    if (name == "indent") {
      const Value* width = arg(a, 0, "width");
      const Value* first = arg(a, 1, "first");
      const Value* blank = arg(a, 2, "blank");
      const std::string pad = width == nullptr ? "    " : width->is_string() ? width->str() : std::string(static_cast<size_t>(std::clamp<int64_t>(is_intlike(*width) ? as_int(*width) : 4, 0, 1024)), ' ');
      std::string s = to_str(v), out;
      size_t start = 0;
      bool first_line = true;
      while (start <= s.size()) {
        size_t nl = s.find('\n', start);
        const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        const bool indent_it = first_line ? (first != nullptr && truthy(*first)) : (!line.empty() || (blank != nullptr && truthy(*blank)));
        out += (indent_it ? pad : "") + line;
        check_size(out.size(), "string");
        if (nl == std::string::npos) break;
        out += "\n";
        start = nl + 1;
        first_line = false;
      }
      return Value::of(std::move(out));
    }
    if (name == "escape" || name == "e") {
      std::string out;
      for (char c : to_str(v)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out.push_back(c);
        }
      }
      return Value::of(std::move(out));
    }
    if (name == "unique") {
      json out = json::array();
      for (const auto& x : iterate(v)) {
        const json xj = to_json(x, "a list");
        if (std::none_of(out.begin(), out.end(), [&](const json& y) { return json_equal(y, xj); })) out.push_back(xj);
      }
      return Value::of(std::move(out));
    }
    if (name == "sort") {
      const Value* reverse = arg(a, 0, "reverse");
      const Value* attribute = arg(a, 2, "attribute");
      std::vector<Value> items = iterate(v);
      std::vector<std::pair<Value, Value>> keyed;
      for (auto& x : items) keyed.emplace_back(attribute != nullptr ? attr_path(x, to_str(*attribute)) : x, x);
      std::stable_sort(keyed.begin(), keyed.end(), [&](auto& x, auto& y) { return compare(x.first, y.first, "<") < 0; });
      if (reverse != nullptr && truthy(*reverse)) std::reverse(keyed.begin(), keyed.end());
      json out = json::array();
      for (auto& kv : keyed) out.push_back(to_json(kv.second, "a list"));
      return Value::of(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      const bool by_attr = name.size() > 6;
      const bool keep_if = name[0] == 's';
      if (by_attr && a.positional.empty()) fail(name + " needs an attribute name");
      json out = json::array();
      for (const auto& x : iterate(v)) {
        const Value subject = by_attr ? attr_path(x, to_str(a.positional[0])) : x;
        const size_t test_at = by_attr ? 1 : 0;
        bool ok;
        if (a.positional.size() > test_at) {
          CallArgs targs;
          targs.positional.assign(a.positional.begin() + static_cast<long>(test_at) + 1, a.positional.end());
          ok = test(to_str(a.positional[test_at]), subject, targs);
        } else {
          ok = truthy(subject);
        }
        if (ok == keep_if) out.push_back(to_json(x, "a list"));
      }
      return Value::of(std::move(out));
    }
    if (name == "map") {
      json out = json::array();
      const Value* attribute = named(a, "attribute");
      for (const auto& x : iterate(v)) {
        if (attribute != nullptr) {
          Value y = attr_path(x, to_str(*attribute));
          if (y.is_undefined())
            if (const Value* def = named(a, "default")) y = *def;
          out.push_back(to_json(y, "a list"));
        } else {
          if (a.positional.empty()) fail("map needs a filter name or attribute=");
          CallArgs fargs;
          fargs.positional.assign(a.positional.begin() + 1, a.positional.end());
          out.push_back(to_json(filter(to_str(a.positional[0]), x, fargs, scope), "a list"));
        }
      }
      return Value::of(std::move(out));
    }
    if (name == "min" || name == "max" || name == "sum") {
      auto items = iterate(v);
      if (name == "sum") {
        Value acc = Value::of(int64_t{0});
        for (const auto& x : items) acc = arithmetic("+", acc, x);
        return acc;
      }
      if (items.empty()) return Value::undefined(name + " of an empty sequence");
      Value best = items[0];
      for (const auto& x : items)
        if (name == "min" ? compare(x, best, "<") < 0 : compare(x, best, ">") > 0) best = x;
      return best;
    }
    if (name == "wordcount") return Value::of(static_cast<int64_t>(split(to_str(v), std::nullopt, -1).size()));
    if (name == "center") {
      const Value* width = arg(a, 0, "width");
      const int64_t w = std::clamp<int64_t>(width != nullptr && is_intlike(*width) ? as_int(*width) : 80, 0, 1 << 20);
      const std::string s = to_str(v);
      const auto len = static_cast<int64_t>(utf8::length(s));
      if (w <= len) return Value::of(s);
      const int64_t total = w - len, left = total / 2 + (total & w & 1);
      return Value::of(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(total - left), ' '));
    }
    fail("no filter named '" + name + "'");
  }

  // x.a.b for attribute= arguments (dots address nested items; digits index lists).
  Value attr_path(const Value& x, const std::string& path) {
    Value cur = x;
    size_t start = 0;
    Expr where;
    where.kind = Expr::Kind::literal;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (cur.is_undefined()) return cur;
      if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && cur.is_list()) cur = get_item(cur, Value::of(std::stoll(part)), where);
      else cur = get_item(cur, Value::of(part), where);
      if (dot == std::string::npos) return cur;
      start = dot + 1;
    }
  }

  std::string tojson(const Value& v, const CallArgs& a) {
    py::DumpOptions o;
    if (const Value* x = arg(a, 0, "ensure_ascii")) o.ensure_ascii = truthy(*x);
    if (const Value* x = arg(a, 1, "indent"); x != nullptr && !x->is_none()) {
      if (x->is_string()) {
        o.indent = 1;
        o.indent_str = x->str();
      } else if (is_intlike(*x)) {
        o.indent = static_cast<int>(std::clamp<int64_t>(as_int(*x), 0, 64));
        o.indent_str.assign(static_cast<size_t>(o.indent), ' ');
      }
      o.item_sep = ",";
    }
    if (const Value* x = arg(a, 2, "separators"); x != nullptr && x->is_list() && x->j->size() == 2 &&
                                                   (*x->j)[0].is_string() && (*x->j)[1].is_string()) {
      o.item_sep = (*x->j)[0].get<std::string>();
      o.key_sep = (*x->j)[1].get<std::string>();
    }
    if (const Value* x = arg(a, 3, "sort_keys")) o.sort_keys = truthy(*x);
    if (v.is_undefined()) fail("Object of type Undefined is not JSON serializable");
    if (v.kind != Value::Kind::data) fail("Object of type " + type_name(v) + " is not JSON serializable");
    std::string out;
    py::dumps(out, *v.j, o, 0, limits_.max_output);
    return out;
  }

  // ------------------------------------------------------------------- tests
  bool test(const std::string& name, const Value& v, const CallArgs& a) {
    auto operand = [&]() -> const Value& {
      if (a.positional.empty()) fail("test '" + name + "' needs an argument");
      return a.positional[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict() || v.kind == Value::Kind::ns;
    if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict();
    if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
    if (name == "number") return is_numeric(v);
    if (name == "integer") return v.is_data() && v.j->is_number_integer();
    if (name == "float") return v.is_data() && v.j->is_number_float();
    if (name == "boolean") return v.is_data() && v.j->is_boolean();
    if (name == "true") return v.is_data() && v.j->is_boolean() && v.j->get<bool>();
    if (name == "false") return v.is_data() && v.j->is_boolean() && !v.j->get<bool>();
    if (name == "callable") return v.kind == Value::Kind::function;
    if (name == "odd" || name == "even") {
      if (!is_intlike(v)) fail("test '" + name + "' needs an integer, got " + type_name(v));
      return (as_int(v) % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
      const Value& d = operand();
      if (!is_intlike(v) || !is_intlike(d) || as_int(d) == 0) fail("divisibleby needs integers, the divisor not 0");
      return as_int(d) == -1 || as_int(v) % as_int(d) == 0;
    }
    if (name == "lower" || name == "upper") return v.is_string() && ascii_case(v.str(), name == "upper") == v.str();
    if (name == "sameas") {
      const Value& o = operand();
      if (v.is_data() && o.is_data() && (v.j->is_null() || v.j->is_boolean()) && v.j->type() == o.j->type()) return *v.j == *o.j;
      return v.is_undefined() && o.is_undefined();
    }
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, operand());
    if (name == "ne" || name == "!=") return !equal(v, operand());
    if (name == "lt" || name == "lessthan" || name == "<") return compare(v, operand(), "<") < 0;
    if (name == "le" || name == "<=") return compare(v, operand(), "<=") <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, operand(), ">") > 0;
    if (name == "ge" || name == ">=") return compare(v, operand(), ">=") >= 0;
    if (name == "in") return contains(operand(), v);
    fail("no test named '" + name + "'");
  }
};

}  // namespace detail

// A parsed template. render() takes the variables as a JSON object; extra globals (functions)
// can be added per call. Rendering is const and may run on several threads at once.
class Template {
 public:
  Template() = default;
  // `name` (a file name, usually) prefixes every error message.
  Template(std::string_view source, std::string name, Limits limits = {})
      : name_(std::move(name)), limits_(limits), body_(std::make_shared<Body>(parse(source))),
        neighbours_(source.find("previtem") != std::string_view::npos || source.find("nextitem") != std::string_view::npos) {}

  struct Result {
    std::string text;
    std::vector<Span> generation_spans;
  };

  Result render_with_spans(json variables) const {
    if (!body_) throw TemplateError(name_ + ": no template");
    if (!variables.is_object()) throw TemplateError(name_ + ": template variables must be a JSON object");
    detail::Renderer r(name_, limits_, neighbours_);
    detail::Scope globals;
    install_globals(globals);
    detail::Scope top{{}, &globals};
    auto vars = std::make_shared<const json>(std::move(variables));
    for (auto it = vars->begin(); it != vars->end(); ++it) {
      Value v;
      v.kind = Value::Kind::data;
      v.root = vars;
      v.j = &it.value();
      top.vars[it.key()] = v;
    }
    r.render(*body_, top);
    return {std::move(r.out), std::move(r.generation_spans)};
  }
  std::string render(json variables) const { return render_with_spans(std::move(variables)).text; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Limits limits_;
  std::shared_ptr<const Body> body_;
  bool neighbours_ = false;  // the source names loop.previtem/nextitem

  Body parse(std::string_view source) const {
    Lexer lexer(source, name_);
    Parser parser(lexer.run(), name_, limits_.max_parse_depth);
    return parser.parse();
  }

  void install_globals(detail::Scope& g) const {
    const std::string name = name_;
    g.vars["raise_exception"] = Value::function([name](CallArgs& a) -> Value {
      std::string msg = a.positional.empty() ? "" : (a.positional[0].is_string() ? a.positional[0].str() : py::repr(*a.positional[0].j));
      throw TemplateError(name + ": the template raised an exception: " + msg);
    });
    g.vars["strftime_now"] = Value::function([name](CallArgs& a) -> Value {
      if (a.positional.empty() || !a.positional[0].is_string()) throw TemplateError(name + ": strftime_now needs a format string");
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[512];
      const size_t n = std::strftime(buf, sizeof buf, a.positional[0].str().c_str(), &tm);
      return Value::of(std::string(buf, n));
    });
    g.vars["namespace"] = Value::function([](CallArgs& a) -> Value {
      Value v;
      v.kind = Value::Kind::ns;
      v.ns = std::make_shared<json>(json::object());
      for (const auto& p : a.positional)
        if (p.is_dict()) v.ns->update(*p.j);
      for (auto& [k, x] : a.named) (*v.ns)[k] = x.is_data() ? *x.j : json(nullptr);
      return v;
    });
    const size_t max_output = limits_.max_output;
    g.vars["range"] = Value::function([name, max_output](CallArgs& a) -> Value {
      std::vector<int64_t> p;
      for (const auto& x : a.positional) {
        if (!x.is_data() || !(x.j->is_number_integer() || x.j->is_boolean())) throw TemplateError(name + ": range() takes integers");
        p.push_back(x.j->is_boolean() ? x.j->get<bool>() : x.j->get<int64_t>());
      }
      if (p.empty() || p.size() > 3) throw TemplateError(name + ": range() takes 1 to 3 integers");
      const int64_t start = p.size() == 1 ? 0 : p[0], stop = p.size() == 1 ? p[0] : p[1], st = p.size() == 3 ? p[2] : 1;
      if (st == 0) throw TemplateError(name + ": range() step must not be zero");
      const long double count = std::max<long double>(0, std::ceil((static_cast<long double>(stop) - start) / st));
      if (count * sizeof(json) > max_output) throw TemplateError(name + ": range() of more than " + std::to_string(max_output / sizeof(json)) + " items");
      json out = json::array();
      for (int64_t i = 0, x = start; i < static_cast<int64_t>(count); ++i, x += st) out.push_back(x);
      return Value::of(std::move(out));
    });
    g.vars["dict"] = Value::function([name](CallArgs& a) -> Value {
      json out = json::object();
      for (const auto& p : a.positional)
        if (p.is_dict()) out.update(*p.j);
      for (auto& [k, x] : a.named) out[k] = x.is_data() ? *x.j : json(nullptr);
      if (detail::nesting(out, detail::kMaxNesting) >= detail::kMaxNesting)
        throw TemplateError(name + ": values nested deeper than " + std::to_string(detail::kMaxNesting));
      return Value::of(std::move(out));
    });
  }
};

}  // namespace minillm::jinja
