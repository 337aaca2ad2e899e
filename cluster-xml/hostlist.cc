#include "dim/cluster/hostlist.h"

#include <algorithm>
#include <map>
#include <unordered_map>

namespace dim::cluster {
namespace {

// Bounds the work a typo like "n[0-99999999]" can cause.
constexpr size_t kMaxExpansion = 1'000'000;

Status Bad(std::string_view expr, const std::string& what) {
  return Status::InvalidArgument("hostlist '" + std::string(expr) + "': " + what +
                                 " (write names like node[001-064], r01c[1-4]n[01-16])");
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Pad(uint64_t v, size_t width) {
  std::string s = std::to_string(v);
  if (s.size() < width) s.insert(0, width - s.size(), '0');
  return s;
}

// "01-16,20" -> {"01",...,"16","20"}
Result<std::vector<std::string>> ExpandBracket(std::string_view expr, std::string_view body) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= body.size()) {
    size_t comma = body.find(',', start);
    std::string_view item = body.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t dash = item.find('-');
    std::string_view lo = item.substr(0, dash);
    std::string_view hi = dash == std::string_view::npos ? lo : item.substr(dash + 1);
    if (!AllDigits(lo) || !AllDigits(hi) || lo.size() > 18 || hi.size() > 18) {
      return Bad(expr, "'" + std::string(item) + "' inside [] is not a number or range");
    }
    uint64_t a = std::stoull(std::string(lo));
    uint64_t b = std::stoull(std::string(hi));
    if (b < a) return Bad(expr, "range '" + std::string(item) + "' runs backwards");
    if (b - a >= kMaxExpansion) return Bad(expr, "range '" + std::string(item) + "' is too large");
    for (uint64_t v = a; v <= b; ++v) out.push_back(Pad(v, lo.size()));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// Splits at commas that are not inside brackets.
std::vector<std::string_view> SplitTopLevel(std::string_view s) {
  std::vector<std::string_view> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') depth++;
    if (s[i] == ']') depth--;
    if (s[i] == ',' && depth == 0) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

}  // namespace

Result<std::vector<std::string>> ExpandHostlist(std::string_view expr) {
  std::vector<std::string> names = {""};
  size_t i = 0;
  if (expr.empty()) return Bad(expr, "empty");
  while (i < expr.size()) {
    char c = expr[i];
    if (c == ']') return Bad(expr, "']' without '['");
    if (c == '[') {
      size_t close = expr.find(']', i);
      if (close == std::string_view::npos) return Bad(expr, "'[' without ']'");
      if (expr.find('[', i + 1) < close) return Bad(expr, "nested '['");
      DIM_ASSIGN_OR_RETURN(auto parts, ExpandBracket(expr, expr.substr(i + 1, close - i - 1)));
      if (names.size() * parts.size() > kMaxExpansion) return Bad(expr, "expands to too many names");
      std::vector<std::string> next;
      next.reserve(names.size() * parts.size());
      for (const auto& n : names) {
        for (const auto& p : parts) next.push_back(n + p);
      }
      names = std::move(next);
      i = close + 1;
      continue;
    }
    if (c == ',' || c == ' ' || c == '@') return Bad(expr, std::string("unexpected '") + c + "'");
    for (auto& n : names) n += c;
    ++i;
  }
  return names;
}

Result<std::vector<const Node*>> SelectNodes(const Cluster& cluster, std::string_view range) {
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < cluster.nodes.size(); ++i) by_name.emplace(cluster.nodes[i].name, i);
  std::vector<bool> selected(cluster.nodes.size(), false);
  std::vector<std::string> unknown;

  for (std::string_view item : SplitTopLevel(range)) {
    bool exclude = !item.empty() && item[0] == '-';
    if (exclude) item.remove_prefix(1);
    if (item.empty()) return Bad(range, "empty item");
    if (item[0] == '@') {
      std::string group(item.substr(1));
      if (group != "all" && !cluster.FindGroup(group)) {
        return Status::NotFound("hostlist '" + std::string(range) + "': no group '" + group +
                                "' in " + cluster.source + " (use @all for every node)");
      }
      for (size_t i = 0; i < cluster.nodes.size(); ++i) {
        bool member = group == "all";
        // A node belongs to its group and to every group that group inherits from.
        // The step bound keeps a cyclic (invalid, unvalidated) description finite.
        std::string g = cluster.nodes[i].group;
        for (size_t steps = 0; !member && !g.empty() && steps <= cluster.groups.size(); ++steps) {
          if (g == group) member = true;
          const Group* gr = cluster.FindGroup(g);
          if (!gr) break;
          g = gr->parent;
        }
        if (member) selected[i] = !exclude;
      }
      continue;
    }
    DIM_ASSIGN_OR_RETURN(auto names, ExpandHostlist(item));
    for (const auto& n : names) {
      auto it = by_name.find(n);
      if (it == by_name.end()) {
        unknown.push_back(n);
        continue;
      }
      selected[it->second] = !exclude;
    }
  }
  if (!unknown.empty()) {
    return Status::NotFound("hostlist '" + std::string(range) + "': " + CompressHostlist(unknown) +
                            (unknown.size() == 1 ? " is not a node" : " are not nodes") + " of " +
                            cluster.source + " (see 'dimctl node list @all')");
  }
  std::vector<const Node*> out;
  for (size_t i = 0; i < selected.size(); ++i) {
    if (selected[i]) out.push_back(&cluster.nodes[i]);
  }
  return out;
}

std::string CompressHostlist(const std::vector<std::string>& names) {
  // Key: the name without its trailing number, and that number's width.
  struct Bucket {
    std::string prefix;
    size_t width;
    std::vector<uint64_t> numbers;
  };
  std::vector<Bucket> buckets;
  std::map<std::pair<std::string, size_t>, size_t> index;
  std::vector<std::pair<bool, size_t>> order;  // (is bucket, bucket index or name index)
  for (size_t n = 0; n < names.size(); ++n) {
    const std::string& name = names[n];
    size_t d = name.size();
    while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9') --d;
    size_t digits = name.size() - d;
    if (digits == 0 || digits > 18) {
      order.push_back({false, n});
      continue;
    }
    auto key = std::make_pair(name.substr(0, d), digits);
    auto [it, fresh] = index.emplace(key, buckets.size());
    if (fresh) {
      buckets.push_back({key.first, digits, {}});
      order.push_back({true, it->second});
    }
    buckets[it->second].numbers.push_back(std::stoull(name.substr(d)));
  }
  std::string out;
  for (const auto& [is_bucket, i] : order) {
    if (!out.empty()) out += ",";
    if (!is_bucket) {
      out += names[i];
      continue;
    }
    Bucket& b = buckets[i];
    std::sort(b.numbers.begin(), b.numbers.end());
    b.numbers.erase(std::unique(b.numbers.begin(), b.numbers.end()), b.numbers.end());
    if (b.numbers.size() == 1) {
      out += b.prefix + Pad(b.numbers[0], b.width);
      continue;
    }
    out += b.prefix + "[";
    for (size_t k = 0; k < b.numbers.size();) {
      size_t e = k;
      while (e + 1 < b.numbers.size() && b.numbers[e + 1] == b.numbers[e] + 1) ++e;
      if (k) out += ",";
      out += Pad(b.numbers[k], b.width);
      if (e > k) out += "-" + Pad(b.numbers[e], b.width);
      k = e + 1;
    }
    out += "]";
  }
  return out;
}

}  // namespace dim::cluster
