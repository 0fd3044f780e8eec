// A small JSON reader/writer: enough to read an artefact's metadata.json and to print
// detections. The torch wheel ships no JSON library and the core must not need a system
// one, so this is ~200 lines of plain C++ with no dependencies.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace detr::json {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Value() = default;
  static Value boolean(bool b) { Value v; v.type_ = Type::Bool; v.bool_ = b; return v; }
  static Value number(double d) { Value v; v.type_ = Type::Number; v.number_ = d; return v; }
  static Value string(std::string s) { Value v; v.type_ = Type::String; v.string_ = std::move(s); return v; }
  static Value array() { Value v; v.type_ = Type::Array; return v; }
  static Value object() { Value v; v.type_ = Type::Object; return v; }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const { expect(Type::Bool, "a boolean"); return bool_; }
  double as_number() const { expect(Type::Number, "a number"); return number_; }
  const std::string& as_string() const { expect(Type::String, "a string"); return string_; }
  const std::vector<Value>& items() const { expect(Type::Array, "an array"); return array_; }
  std::vector<Value>& items() { expect(Type::Array, "an array"); return array_; }

  // Object members keep their insertion order (small objects: linear search is fine).
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  const Value* find(const std::string& key) const {
    if (type_ != Type::Object) return nullptr;
    for (const auto& member : object_) {
      if (member.first == key) return &member.second;
    }
    return nullptr;
  }
  const Value& at(const std::string& key) const {
    const Value* value = find(key);
    if (value == nullptr) throw std::out_of_range("missing key '" + key + "'");
    return *value;
  }
  void set(const std::string& key, Value value) {
    expect(Type::Object, "an object");
    for (auto& member : object_) {
      if (member.first == key) { member.second = std::move(value); return; }
    }
    object_.emplace_back(key, std::move(value));
  }
  void push_back(Value value) { expect(Type::Array, "an array"); array_.push_back(std::move(value)); }
  const std::vector<std::pair<std::string, Value>>& members() const { expect(Type::Object, "an object"); return object_; }

 private:
  void expect(Type type, const char* what) const {
    if (type_ != type) throw std::invalid_argument(std::string("JSON value is not ") + what);
  }

  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

namespace detail {

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  Value parse_document() {
    Value value = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw ParseError("invalid JSON at offset " + std::to_string(pos_) + ": " + message);
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) ++pos_;
  }
  char peek() {
    skip_space();
    if (pos_ >= text_.size()) fail("unexpected end of input");
    return text_[pos_];
  }
  void expect_literal(const char* literal) {
    for (const char* c = literal; *c; ++c, ++pos_) {
      if (pos_ >= text_.size() || text_[pos_] != *c) fail(std::string("expected '") + literal + "'");
    }
  }

  Value parse_value(int depth) {
    if (depth > 64) fail("nested too deeply");
    switch (peek()) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return Value::string(parse_string());
      case 't': expect_literal("true"); return Value::boolean(true);
      case 'f': expect_literal("false"); return Value::boolean(false);
      case 'n': expect_literal("null"); return Value();
      default: return parse_number();
    }
  }

  Value parse_object(int depth) {
    Value object = Value::object();
    ++pos_;  // '{'
    if (peek() == '}') { ++pos_; return object; }
    while (true) {
      if (peek() != '"') fail("expected a string key");
      std::string key = parse_string();
      if (peek() != ':') fail("expected ':'");
      ++pos_;
      object.set(key, parse_value(depth + 1));
      char next = peek();
      ++pos_;
      if (next == '}') return object;
      if (next != ',') fail("expected ',' or '}'");
    }
  }

  Value parse_array(int depth) {
    Value array = Value::array();
    ++pos_;  // '['
    if (peek() == ']') { ++pos_; return array; }
    while (true) {
      array.push_back(parse_value(depth + 1));
      char next = peek();
      ++pos_;
      if (next == ']') return array;
      if (next != ',') fail("expected ',' or ']'");
    }
  }

  Value parse_number() {
    std::size_t start = pos_;
    auto digits = [&] { std::size_t s = pos_; while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_; return pos_ > s; };
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    if (!digits()) fail("expected a value");
    if (pos_ < text_.size() && text_[pos_] == '.') { ++pos_; if (!digits()) fail("expected digits after '.'"); }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!digits()) fail("expected digits in the exponent");
    }
    // strtod is locale dependent for the decimal point; JSON numbers use '.', and the
    // C locale (the default in C and C++ programs) agrees.
    return Value::number(std::strtod(text_.substr(start, pos_ - start).c_str(), nullptr));
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > text_.size()) fail("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') code |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') code |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += char(code);
    } else if (code < 0x800) {
      out += char(0xC0 | (code >> 6));
      out += char(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += char(0xE0 | (code >> 12));
      out += char(0x80 | ((code >> 6) & 0x3F));
      out += char(0x80 | (code & 0x3F));
    } else {
      out += char(0xF0 | (code >> 18));
      out += char(0x80 | ((code >> 12) & 0x3F));
      out += char(0x80 | ((code >> 6) & 0x3F));
      out += char(0x80 | (code & 0x3F));
    }
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) fail("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { out += c; continue; }
      if (pos_ >= text_.size()) fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code = parse_hex4();
          if (code >= 0xD800 && code < 0xDC00) {  // surrogate pair
            if (pos_ + 2 > text_.size() || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') fail("lone surrogate");
            pos_ += 2;
            unsigned low = parse_hex4();
            if (low < 0xDC00 || low >= 0xE000) fail("bad low surrogate");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, code);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
  }

  const std::string& text_;
  std::size_t pos_ = 0;
};

}  // namespace detail

inline Value parse(const std::string& text) { return detail::Parser(text).parse_document(); }

// A JSON string literal for `text` (UTF-8 passes through; control characters are escaped).
inline std::string quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Shortest text that reads back as the same float32 (9 significant digits always do).
inline std::string number(double value) {
  if (!std::isfinite(value)) return "null";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

}  // namespace detr::json
