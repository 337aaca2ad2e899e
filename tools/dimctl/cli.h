// dimctl's command framework: nouns with verbs (`dimctl image commit`), options
// declared once so that parsing, `--help` on every level and errors agree.
// Each noun lives in its own cmd_<noun>.cc and registers itself through a
// function listed in main.cc.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dim/json.h"
#include "dim/status.h"

namespace dimctl {

struct Option {
  std::string name;        // long name without dashes: "message"
  char short_name = 0;     // 'm', or 0
  std::string value_name;  // "MSG" if the option takes a value, empty for a flag
  std::string help;
  bool repeatable = false;  // may be given several times (values accumulate)
};

// `--json` is parsed as a global option anywhere on the line; verbs that
// produce listings declare it too, so their --help says so.
inline const Option kJsonOption{"json", 0, "", "machine-readable output"};
// The site secret and the top server, for commands that talk to imaged.
inline const Option kSecretOption{"secret", 0, "FILE", "site secret (default $DIM_SECRET or /etc/dim/secret)"};
inline const Option kServerOption{"server", 0, "URL", "the top server (default $DIM_SERVER or http://127.0.0.1:7480)"};

// Global options every command accepts; parsed before the noun.
struct GlobalOptions {
  std::string root;  // --root, or $DIM_ROOT, or /var/lib/dim
  bool json = false;
  int verbosity = 0;  // -v adds one, -q sets -1
};

class Invocation {
 public:
  GlobalOptions global;
  std::vector<std::string> args;  // positional arguments
  std::map<std::string, std::vector<std::string>> opts;

  bool flag(const std::string& name) const { return opts.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  const std::vector<std::string>& all(const std::string& name) const;
  bool json() const { return global.json || flag("json"); }
};

struct Verb {
  std::string name;
  std::string usage;    // positional synopsis: "NAME DIR"
  std::string summary;  // one line for listings
  std::string details;  // paragraph(s) for `--help`, may include examples
  std::vector<Option> options;
  size_t min_args = 0;
  size_t max_args = 0;  // SIZE_MAX for "any number"
  std::function<dim::Status(Invocation&)> run;
};

struct Noun {
  std::string name;
  std::string summary;
  std::vector<Verb> verbs;
};

// A verb-less command (e.g. `dimctl push`, `dimctl status`) is a Noun with a
// single verb whose name is empty.
class Cli {
 public:
  void Add(Noun noun) { nouns_.push_back(std::move(noun)); }
  // Parses argv, runs the command and returns the process exit code:
  // 0 ok, 1 the command failed, 2 usage error.
  int Main(int argc, char** argv) const;

 private:
  std::vector<Noun> nouns_;
};

// Exit codes, so scripts can tell a usage mistake from a failed operation.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitBusy = 3;  // another dimctl holds the image lock; retry later

// Output helpers shared by commands.
using Json = dim::json::Json;
void PrintJson(const Json& j);                // one line of JSON on stdout (--json)
std::string HumanBytes(uint64_t n);           // "1.5 GiB"
std::string FormatTime(int64_t ns_since_epoch);  // "2026-11-21 05:08:24 UTC"

// Each noun's registration function.
Noun ImageCommands();
Noun KeepoutCommands();
Noun PolicyCommands();
Noun ServerCommands();
Noun StoreCommands();
Noun KeyCommands();
Noun CaCommands();
Noun ServerCommands();
Noun ClusterCommands();
Noun NodeCommands();
Noun BootCommands();
Noun CloneCommands();
void AddNodeOverlayVerbs(Noun& node);
void AddNodePowerVerbs(Noun& node);
Noun PushCommands();
void AddRollbackVerb(Noun& image);
Noun StatusCommands();
Noun InitrdCommands();

}  // namespace dimctl
