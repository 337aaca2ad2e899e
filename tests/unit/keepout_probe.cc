// Test-only: prints keep-out verdicts in the format of `git check-ignore -z -v -n`,
// so tests/integration/keepout_vs_git.sh can compare dim's matcher with git's.
// Usage: keepout_probe PATTERNS_FILE ROOT < NUL-separated relative paths
// Entry types come from lstat(ROOT/path), as git resolves them with --no-index.
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "dim/keepout.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s PATTERNS_FILE ROOT < paths (NUL-separated)\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "keepout_probe: cannot read %s\n", argv[1]);
    return 2;
  }
  std::vector<dim::keepout::Rule> rules;
  for (std::string line; std::getline(in, line);) rules.push_back({line, ".gitignore", 0});
  auto set = dim::keepout::RuleSet::Compile(std::move(rules));
  if (!set.ok()) {
    std::fprintf(stderr, "keepout_probe: %s\n", set.status().ToString().c_str());
    return 2;
  }

  const std::string root = argv[2];
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  std::string out;
  size_t start = 0;
  while (start < input.size()) {
    size_t end = input.find('\0', start);
    if (end == std::string::npos) end = input.size();
    const std::string path = input.substr(start, end - start);
    start = end + 1;
    struct stat st;
    const bool is_dir = lstat((root + "/" + path).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    // Relative on purpose: Check must treat "etc/x" as "/etc/x".
    const dim::keepout::Match m = set->Check(path, is_dir);
    // git names a pattern for kept-out paths and for '!' rules matching the path
    // itself; a re-included ancestor leaves it silent.
    const bool git_reports = m.rule && (m.kept_out || m.matched_path == "/" + path);
    if (git_reports) {
      out += m.rule->source + '\0' + std::to_string(m.rule->position) + '\0' + m.rule->pattern;
    } else {
      out += std::string(2, '\0');
    }
    out += '\0' + path + '\0';
    if (m.kept_out != set->IsKeptOut(path, is_dir)) {
      std::fprintf(stderr, "keepout_probe: Check and IsKeptOut disagree on %s\n", path.c_str());
      return 1;
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
