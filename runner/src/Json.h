#pragma once
// A minimal JSON writer for result.json / steps.jsonl / inspect output. Output is deterministic:
// keys in insertion order, doubles printed with %.12g (NaN and ±inf as null): every fp32 value
// exactly, fp64 metrics to ~1e-12.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace repshape {

class JsonWriter {
 public:
  JsonWriter& beginObject() { separate(); out_ += '{'; first_.push_back(true); return *this; }
  JsonWriter& endObject() { out_ += '}'; first_.pop_back(); return *this; }
  JsonWriter& beginArray() { separate(); out_ += '['; first_.push_back(true); return *this; }
  JsonWriter& endArray() { out_ += ']'; first_.pop_back(); return *this; }

  JsonWriter& key(std::string_view k) {
    separate();
    appendString(k);
    out_ += ':';
    afterKey_ = true;
    return *this;
  }
  JsonWriter& value(double v) {
    separate();
    if (!std::isfinite(v)) {
      out_ += "null";
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.12g", v);
      out_ += buf;
    }
    return *this;
  }
  JsonWriter& value(std::optional<double> v) { return v ? value(*v) : null(); }
  JsonWriter& value(int64_t v) { separate(); out_ += std::to_string(v); return *this; }
  JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(bool v) { separate(); out_ += v ? "true" : "false"; return *this; }
  JsonWriter& value(std::string_view v) { separate(); appendString(v); return *this; }
  JsonWriter& value(const char* v) { return value(std::string_view(v)); }
  JsonWriter& null() { separate(); out_ += "null"; return *this; }
  // Inserts already-serialised JSON (e.g. a nested object built by another writer).
  JsonWriter& raw(std::string_view json) { separate(); out_ += json; return *this; }

  template <typename T>
  JsonWriter& field(std::string_view k, const T& v) { key(k); return value(v); }

  const std::string& str() const { return out_; }

 private:
  void separate() {
    if (afterKey_) { afterKey_ = false; return; }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  void appendString(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out_ += buf;
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> first_;
  bool afterKey_ = false;
};

}  // namespace repshape
