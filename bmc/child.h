// Internal: runs one helper program (ipmitool) the way BMC access needs it:
// an explicit, minimal environment; a secret handed over on fd 3 through a
// pipe (never argv or the environment, which /proc shows); output captured
// up to a cap; killed at a deadline. RAII: a Child kills and reaps its
// process if it is dropped early.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/fd.h"
#include "dim/status.h"

namespace dim::bmc::internal {

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is an absolute path
  std::vector<std::string> env;   // "NAME=value", the whole environment
  std::optional<std::string> fd3;  // written into a pipe the child reads as fd 3
  enum class Stdin { kNull, kInherit, kPipe } in = Stdin::kNull;
  bool capture_stdout = true;  // else inherited
};

class Child {
 public:
  static Result<Child> Start(const ChildSpec& spec);
  Child(Child&& o) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();  // kills (SIGKILL) and reaps a child still running

  // Collects stdout and stderr (each capped at 64 KiB) until the child
  // exits or `deadline` passes, when it is killed.
  struct Outcome {
    int exit_code = -1;  // -1: killed by a signal (or at the deadline)
    bool timed_out = false;
    std::string out, err;
  };
  Outcome Wait(std::chrono::steady_clock::time_point deadline);

  pid_t pid() const { return pid_; }
  // The write end of the child's stdin (ChildSpec::Stdin::kPipe).
  int stdin_fd() const { return in_.get(); }
  void CloseStdin() { in_.Reset(); }
  int stderr_fd() const { return err_.get(); }

 private:
  Child() = default;
  pid_t pid_ = -1;
  Fd in_, out_, err_;
};

// The absolute path of `program` in the directories of $PATH, or NotFound
// saying which package to install.
Result<std::string> FindProgram(const std::string& program, const std::string& package);

}  // namespace dim::bmc::internal
