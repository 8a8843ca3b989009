#pragma once
// Declarative config fields: each key is declared once with its type, range and member pointer;
// parsing, unknown-key suggestions and TOML emission all derive from that declaration.

#include "Config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace repshape::detail {

// Source path given to values parsed from `--set section.key=value`.
inline constexpr std::string_view kOverrideSource = "--set";

// Where a node came from, for `file:line: key: what was expected` messages.
struct ParseContext {
  std::string file;
  std::map<std::string, std::string>* locations = nullptr;  // key path → "file:line", when recorded
  void record(const std::string& key, const toml::node& node) const {
    if (locations) (*locations)[key] = where(node);
  }
  std::string where(const toml::node& node) const;
  std::string where(const toml::source_region& source) const;
  [[noreturn]] void fail(const toml::node& node, const std::string& key, const std::string& what) const;
  [[noreturn]] void fail(const toml::source_region& source, const std::string& key,
                         const std::string& what) const;
};

// Edit distance, for "did you mean" suggestions.
std::size_t editDistance(const std::string& a, const std::string& b);
std::string nearest(const std::string& key, const std::vector<std::string>& candidates);
std::string typeName(const toml::node& node);

template <typename S>
struct Field {
  std::string key;
  std::function<void(S&, const toml::node&, const std::string& path, const ParseContext&)> parse;
  std::function<void(const S&, toml::table&)> emit;
};

constexpr double kInf = std::numeric_limits<double>::infinity();

inline int64_t readInt(const toml::node& node, const std::string& path, const ParseContext& ctx,
                       int64_t lo, int64_t hi) {
  if (!node.is_integer()) ctx.fail(node, path, "expected an integer, got " + typeName(node));
  const int64_t v = *node.value<int64_t>();
  if (v < lo || v > hi) {
    ctx.fail(node, path, "expected an integer in [" + std::to_string(lo) + ", " +
                             (hi == std::numeric_limits<int64_t>::max() ? "inf" : std::to_string(hi)) +
                             "], got " + std::to_string(v));
  }
  return v;
}

inline double readDouble(const toml::node& node, const std::string& path, const ParseContext& ctx,
                         double lo, double hi, bool loOpen) {
  if (!node.is_number()) ctx.fail(node, path, "expected a number, got " + typeName(node));
  const double v = *node.value<double>();
  if (!std::isfinite(v) || v < lo || v > hi || (loOpen && v == lo)) {
    std::ostringstream what;
    what << "expected a number in " << (loOpen ? "(" : "[") << lo << ", " << hi << "], got " << v;
    ctx.fail(node, path, what.str());
  }
  return v;
}

inline std::string readString(const toml::node& node, const std::string& path, const ParseContext& ctx,
                              const std::vector<std::string>& choices) {
  if (!node.is_string()) ctx.fail(node, path, "expected a string, got " + typeName(node));
  std::string v = *node.value<std::string>();
  if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + ("\"" + c + "\"");
    std::string hint = nearest(v, choices);
    ctx.fail(node, path, "expected one of " + list + ", got \"" + v + "\"" +
                             (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  return v;
}

inline const toml::array& readArray(const toml::node& node, const std::string& path,
                                    const ParseContext& ctx) {
  if (!node.is_array()) ctx.fail(node, path, "expected an array, got " + typeName(node));
  return *node.as_array();
}

template <typename S>
Field<S> intField(const char* key, int64_t S::*member, int64_t lo,
                  int64_t hi = std::numeric_limits<int64_t>::max()) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            s.*member = readInt(n, p, c, lo, hi);
          },
          [=](const S& s, toml::table& t) { t.insert_or_assign(key, s.*member); }};
}

template <typename S>
Field<S> optionalIntField(const char* key, std::optional<int64_t> S::*member, int64_t lo) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            s.*member = readInt(n, p, c, lo, std::numeric_limits<int64_t>::max());
          },
          [=](const S& s, toml::table& t) {
            if (s.*member) t.insert_or_assign(key, *(s.*member));
          }};
}

template <typename S>
Field<S> seedField(const char* key, uint64_t S::*member) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            s.*member = static_cast<uint64_t>(readInt(n, p, c, 0, std::numeric_limits<int64_t>::max()));
          },
          [=](const S& s, toml::table& t) { t.insert_or_assign(key, static_cast<int64_t>(s.*member)); }};
}

template <typename S>
Field<S> doubleField(const char* key, double S::*member, double lo, double hi = kInf,
                     bool loOpen = false) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            s.*member = readDouble(n, p, c, lo, hi, loOpen);
          },
          [=](const S& s, toml::table& t) { t.insert_or_assign(key, s.*member); }};
}

template <typename S>
Field<S> boolField(const char* key, bool S::*member) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            if (!n.is_boolean()) c.fail(n, p, "expected true or false, got " + typeName(n));
            s.*member = *n.value<bool>();
          },
          [=](const S& s, toml::table& t) { t.insert_or_assign(key, s.*member); }};
}

template <typename S>
Field<S> stringField(const char* key, std::string S::*member, std::vector<std::string> choices = {}) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            s.*member = readString(n, p, c, choices);
          },
          [=](const S& s, toml::table& t) { t.insert_or_assign(key, s.*member); }};
}

template <typename S>
Field<S> intListField(const char* key, std::vector<int64_t> S::*member, int64_t lo) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            std::vector<int64_t> values;
            for (const auto& item : readArray(n, p, c))
              values.push_back(readInt(item, p, c, lo, std::numeric_limits<int64_t>::max()));
            s.*member = std::move(values);
          },
          [=](const S& s, toml::table& t) {
            toml::array a;
            for (int64_t v : s.*member) a.push_back(v);
            t.insert_or_assign(key, std::move(a));
          }};
}

template <typename S>
Field<S> doubleListField(const char* key, std::vector<double> S::*member, double lo, double hi) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            std::vector<double> values;
            for (const auto& item : readArray(n, p, c)) values.push_back(readDouble(item, p, c, lo, hi, false));
            s.*member = std::move(values);
          },
          [=](const S& s, toml::table& t) {
            toml::array a;
            for (double v : s.*member) a.push_back(v);
            t.insert_or_assign(key, std::move(a));
          }};
}

template <typename S>
Field<S> stringListField(const char* key, std::vector<std::string> S::*member) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            std::vector<std::string> values;
            for (const auto& item : readArray(n, p, c)) values.push_back(readString(item, p, c, {}));
            s.*member = std::move(values);
          },
          [=](const S& s, toml::table& t) {
            toml::array a;
            for (const auto& v : s.*member) a.push_back(v);
            t.insert_or_assign(key, std::move(a));
          }};
}

// Groups of class indices, e.g. relabel = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]: each group non-empty,
// classes >= 0, no class in two groups (located at the repeated entry). [] = no grouping.
template <typename S>
Field<S> classGroupsField(const char* key, std::vector<std::vector<int64_t>> S::*member) {
  return {key,
          [=](S& s, const toml::node& n, const std::string& p, const ParseContext& c) {
            std::vector<std::vector<int64_t>> groups;
            std::map<int64_t, std::size_t> groupOf;  // class → its group, for repeats
            const toml::array& outer = readArray(n, p, c);
            for (std::size_t g = 0; g < outer.size(); ++g) {
              const std::string path = p + "[" + std::to_string(g) + "]";
              const toml::array& inner = readArray(*outer.get(g), path, c);
              if (inner.empty()) c.fail(*outer.get(g), path, "an empty group; list the classes it merges, e.g. [0, 1]");
              std::vector<int64_t> group;
              for (const auto& item : inner) {
                const int64_t label = readInt(item, path, c, 0, 1000000);
                const auto [it, added] = groupOf.emplace(label, g);
                if (!added)
                  c.fail(item, path, "class " + std::to_string(label) + " is already in group " +
                                         std::to_string(it->second) + "; every class belongs to one group");
                group.push_back(label);
              }
              groups.push_back(std::move(group));
            }
            s.*member = std::move(groups);
          },
          [=](const S& s, toml::table& t) {
            toml::array outer;
            for (const auto& group : s.*member) {
              toml::array inner;
              for (int64_t v : group) inner.push_back(v);
              outer.push_back(std::move(inner));
            }
            t.insert_or_assign(key, std::move(outer));
          }};
}

template <typename S>
std::vector<std::string> keysOf(const std::vector<Field<S>>& fields) {
  std::vector<std::string> keys;
  for (const auto& f : fields) keys.push_back(f.key);
  return keys;
}

// Parses `table` into `out`: unknown keys are errors naming the nearest valid key.
template <typename S>
void parseTable(const toml::table& table, const std::string& prefix, const std::vector<Field<S>>& fields,
                S& out, const ParseContext& ctx) {
  for (auto&& [key, node] : table) {
    const std::string name(key.str());
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    auto it = std::find_if(fields.begin(), fields.end(), [&](const Field<S>& f) { return f.key == name; });
    if (it == fields.end()) {
      const std::string hint = nearest(name, keysOf(fields));
      ctx.fail(key.source(), path,
               "unknown key" + (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)"));
    }
    ctx.record(path, node);
    it->parse(out, node, path, ctx);
  }
}

template <typename S>
toml::table emitTable(const S& value, const std::vector<Field<S>>& fields) {
  toml::table table;
  for (const auto& f : fields) f.emit(value, table);
  return table;
}

}  // namespace repshape::detail
