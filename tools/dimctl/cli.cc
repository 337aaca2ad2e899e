#include "cli.h"

#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>

namespace dimctl {
namespace {

constexpr const char* kDefaultRoot = "/var/lib/dim";

void PrintGlobalOptions(std::ostream& out) {
  out << "Global options:\n"
         "  --root DIR     the dim store (default $DIM_ROOT or /var/lib/dim)\n"
         "  --json         machine-readable output for listings\n"
         "  -v, --verbose  more detail on stderr\n"
         "  -q, --quiet    errors only\n"
         "  -h, --help     help for this level\n"
         "  --version      print the version\n";
}

void PrintTopHelp(const std::vector<Noun>& nouns, std::ostream& out) {
  out << "usage: dimctl [global options] <command> [<verb>] [args]\n\n"
         "dim keeps versioned master images and serves them to diskless nodes.\n\n"
         "Commands:\n";
  for (const auto& n : nouns) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-10s %s\n", n.name.c_str(), n.summary.c_str());
    out << line;
  }
  out << "\n";
  PrintGlobalOptions(out);
  out << "\nRun 'dimctl <command> --help' for the verbs of a command.\n";
}

void PrintNounHelp(const Noun& noun, std::ostream& out) {
  out << "usage: dimctl " << noun.name << " <verb> [args]\n\n" << noun.summary << "\n\nVerbs:\n";
  for (const auto& v : noun.verbs) {
    char line[512];
    std::snprintf(line, sizeof line, "  %-10s %s\n", v.name.c_str(), v.summary.c_str());
    out << line;
  }
  out << "\nRun 'dimctl " << noun.name << " <verb> --help' for details.\n";
}

void PrintVerbHelp(const Noun& noun, const Verb& verb, std::ostream& out) {
  out << "usage: dimctl " << noun.name;
  if (!verb.name.empty()) out << " " << verb.name;
  if (!verb.options.empty()) out << " [options]";
  if (!verb.usage.empty()) out << " " << verb.usage;
  out << "\n\n" << verb.summary << "\n";
  if (!verb.details.empty()) out << "\n" << verb.details << "\n";
  if (!verb.options.empty()) {
    out << "\nOptions:\n";
    for (const auto& o : verb.options) {
      std::string left = "  ";
      left += o.short_name ? std::string("-") + o.short_name + ", " : "    ";
      left += "--" + o.name;
      if (!o.value_name.empty()) left += " " + o.value_name;
      char line[512];
      std::snprintf(line, sizeof line, "%-28s %s\n", left.c_str(), o.help.c_str());
      out << line;
    }
  }
  out << "\n";
  PrintGlobalOptions(out);
}

int UsageError(const std::string& msg, const std::string& hint) {
  std::cerr << "dimctl: " << msg << "\n";
  if (!hint.empty()) std::cerr << "Try '" << hint << " --help'.\n";
  return kExitUsage;
}

// Consumes a global option at argv[i]; returns false when argv[i] is not one.
bool ParseGlobal(int argc, char** argv, int& i, GlobalOptions& g, std::string& err) {
  std::string a = argv[i];
  if (a == "--json") {
    g.json = true;
  } else if (a == "-v" || a == "--verbose") {
    g.verbosity++;
  } else if (a == "-q" || a == "--quiet") {
    g.verbosity = -1;
  } else if (a == "--root") {
    if (i + 1 >= argc) {
      err = "--root needs a directory";
      return true;
    }
    g.root = argv[++i];
  } else if (a.rfind("--root=", 0) == 0) {
    g.root = a.substr(7);
  } else {
    return false;
  }
  return true;
}

const Option* FindOption(const Verb& v, const std::string& name, char short_name) {
  for (const auto& o : v.options) {
    if ((!name.empty() && o.name == name) || (short_name && o.short_name == short_name)) return &o;
  }
  return nullptr;
}

int ExitCodeFor(const dim::Status& s) {
  if (s.code() == dim::Code::kBusy) return kExitBusy;
  return kExitFailure;
}

}  // namespace

std::optional<std::string> Invocation::get(const std::string& name) const {
  auto it = opts.find(name);
  if (it == opts.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Invocation::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

const std::vector<std::string>& Invocation::all(const std::string& name) const {
  static const std::vector<std::string> kEmpty;
  auto it = opts.find(name);
  return it == opts.end() ? kEmpty : it->second;
}

int Cli::Main(int argc, char** argv) const {
  Invocation inv;
  if (const char* env = std::getenv("DIM_ROOT"); env && *env) inv.global.root = env;
  int i = 1;
  std::string err;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help" || a == "help") {
      PrintTopHelp(nouns_, std::cout);
      return kExitOk;
    }
    if (a == "--version") {
      std::cout << "dimctl " << DIM_VERSION << "\n";
      return kExitOk;
    }
    if (!ParseGlobal(argc, argv, i, inv.global, err)) break;
    if (!err.empty()) return UsageError(err, "dimctl");
  }
  if (i >= argc) {
    PrintTopHelp(nouns_, std::cerr);
    return kExitUsage;
  }
  const std::string noun_name = argv[i++];
  const Noun* noun = nullptr;
  for (const auto& n : nouns_) {
    if (n.name == noun_name) noun = &n;
  }
  if (!noun) return UsageError("unknown command '" + noun_name + "'", "dimctl");

  const Verb* verb = nullptr;
  std::string hint = "dimctl " + noun->name;
  if (noun->verbs.size() == 1 && noun->verbs[0].name.empty()) {
    verb = &noun->verbs[0];
  } else {
    if (i >= argc) {
      PrintNounHelp(*noun, std::cerr);
      return kExitUsage;
    }
    std::string vname = argv[i++];
    if (vname == "-h" || vname == "--help" || vname == "help") {
      PrintNounHelp(*noun, std::cout);
      return kExitOk;
    }
    for (const auto& v : noun->verbs) {
      if (v.name == vname) verb = &v;
    }
    if (!verb) return UsageError("'" + noun->name + "' has no verb '" + vname + "'", hint);
    hint += " " + verb->name;
  }

  // Options and positionals may interleave; "--" ends options.
  bool only_args = false;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (only_args || a.size() < 2 || a[0] != '-') {
      inv.args.push_back(a);
      continue;
    }
    if (a == "--") {
      only_args = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      PrintVerbHelp(*noun, *verb, std::cout);
      return kExitOk;
    }
    if (ParseGlobal(argc, argv, i, inv.global, err)) {
      if (!err.empty()) return UsageError(err, hint);
      continue;
    }
    std::string name, value;
    bool has_value = false;
    const Option* opt = nullptr;
    if (a.rfind("--", 0) == 0) {
      name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      opt = FindOption(*verb, name, 0);
    } else {
      opt = FindOption(*verb, "", a[1]);
      if (opt && a.size() > 2) {
        value = a.substr(2);
        has_value = true;
      }
    }
    if (!opt) return UsageError("unknown option '" + a + "'", hint);
    if (opt->value_name.empty()) {
      if (has_value) return UsageError("option --" + opt->name + " takes no value", hint);
      inv.opts[opt->name].push_back("");
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return UsageError("option --" + opt->name + " needs a value (" + opt->value_name + ")",
                          hint);
      }
      value = argv[++i];
    }
    auto& slot = inv.opts[opt->name];
    if (!opt->repeatable) slot.clear();
    slot.push_back(value);
  }
  if (inv.args.size() < verb->min_args || inv.args.size() > verb->max_args) {
    std::string msg = "wrong number of arguments";
    if (!verb->usage.empty()) msg += "; expected: " + hint + " " + verb->usage;
    return UsageError(msg, hint);
  }
  if (inv.global.root.empty()) inv.global.root = kDefaultRoot;

  dim::Status s = verb->run(inv);
  if (!s.ok()) {
    std::cerr << "dimctl: " << s.ToString() << "\n";
    return ExitCodeFor(s);
  }
  return kExitOk;
}

void PrintJson(const Json& j) { std::cout << dim::json::Dump(j) << "\n"; }

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

std::string FormatTime(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace dimctl
