// Power control and Serial-over-LAN consoles of nodes through their BMCs,
// over IPMI with ipmitool (`dimctl node power|console`). Every node of a
// request is tried, a bounded number at a time, each within its own
// deadline; results come back per node. Passwords reach ipmitool through a
// pipe on fd 3 (`-f /proc/self/fd/3`), never through argv or the
// environment, which other users can read in /proc.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/bmc/credentials.h"
#include "dim/cluster/model.h"
#include "dim/status.h"

namespace dim::bmc {

enum class PowerAction { kOn, kOff, kCycle, kStatus };
std::optional<PowerAction> ParsePowerAction(std::string_view word);  // on, off, cycle, status
const char* PowerActionName(PowerAction a);

// What went wrong with one node, for scripts (--json "failure").
enum class Failure {
  kNone,
  kNoBmc,           // the description gives the node no <bmc>
  kCredentials,     // its credentials entry is missing from the file
  kUnreachable,     // no answer from the BMC
  kAuthentication,  // wrong password, unknown user, too little privilege
  kUnsupported,     // the BMC refuses the cipher suite or the request
  kError,           // anything else ipmitool said
};
const char* FailureName(Failure f);  // "no-bmc", "credentials", "unreachable", ...

// One node's BMC with the credential its <bmc credentials> names.
struct Target {
  std::string node;
  cluster::Bmc bmc;
  std::string user;      // the description's, else the credentials entry's
  std::string password;
};

// Targets for `nodes`: a node without a BMC, or whose credentials entry is
// missing, gets a result right away (its failure) instead of a target.
struct Plan {
  std::vector<Target> targets;
  struct Refused {
    std::string node;
    Failure failure;
    std::string error;
  };
  std::vector<Refused> refused;
};
Plan PlanTargets(const std::vector<const cluster::Node*>& nodes, const Credentials& creds,
                 const std::string& creds_path);

struct Options {
  int parallel = 32;     // BMCs asked at once
  int timeout_s = 30;    // per node: ipmitool is killed after this
  std::string ipmitool;  // absolute path (FindIpmitool)
};
Result<std::string> FindIpmitool();

struct NodeResult {
  std::string node;
  std::string bmc;  // "10.2.1.5:623"
  bool ok = false;
  std::string power;  // "on" / "off" for status; "" otherwise
  Failure failure = Failure::kNone;
  std::string error;  // for a person: what failed and what to do
};

// Runs `action` on every target, `parallel` at a time; results in target order.
std::vector<NodeResult> RunPower(const std::vector<Target>& targets, PowerAction action,
                              const Options& opts);

// ipmitool's arguments for a target, after the program name; "-f
// /proc/self/fd/3" when it has a password. Values were checked by the loader
// and again here: an unsafe one is InvalidArgument, never an argument.
Result<std::vector<std::string>> IpmitoolArgs(const Target& t,
                                              const std::vector<std::string>& command);

// Decoders of what ipmitool prints (fuzzed with the credentials parser).
// "Chassis Power is on" -> "on"; nullopt when stdout says neither.
std::optional<std::string> ParsePowerStatus(std::string_view out);
// The failure ipmitool's stderr (with -v) shows, and a message naming the
// node's BMC and what to do.
std::pair<Failure, std::string> ClassifyFailure(const Target& t, std::string_view err,
                                                 int exit_code);

struct ConsoleOptions {
  std::string ipmitool;
  bool force = false;  // deactivate a SOL session left open first
  int linger_s = 2;    // stdin not a terminal: how long to keep showing output after its end
  int connect_timeout_s = 30;
};
// `ipmitool sol activate` on the node's BMC with this process's terminal;
// the session ends with ~. typed at the start of a line. When stdin is not a
// terminal (a script), its bytes are forwarded and, when it ends, the session
// stays open linger_s more seconds and is then closed with ~. as typed.
Status RunConsole(const Target& t, const ConsoleOptions& opts);

}  // namespace dim::bmc
