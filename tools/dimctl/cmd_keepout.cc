// dimctl keepout ...: the keep-out list of an image (paths a push never overwrites).
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/keepout.h"

namespace dimctl {
namespace {

using dim::Status;

Result<dim::keepout::RuleSet> ImageRules(dim::Store& store, const dim::ImageInfo& image) {
  DIM_ASSIGN_OR_RETURN(auto patterns, store.catalog().KeepoutList(image.id));
  std::vector<dim::keepout::Rule> rules;
  int pos = 1;
  for (auto& p : patterns) rules.push_back({p, "image " + image.name, pos++});
  return dim::keepout::RuleSet::Compile(std::move(rules));
}

Status Add(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  // Validate them all first: none is added unless all are good.
  for (size_t i = 1; i < inv.args.size(); i++) {
    DIM_RETURN_IF_ERROR(dim::keepout::ValidatePattern(inv.args[i]));
  }
  DIM_ASSIGN_OR_RETURN(auto existing, store->catalog().KeepoutList(image.id));
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store->catalog().db()));
  for (size_t i = 1; i < inv.args.size(); i++) {
    if (std::find(existing.begin(), existing.end(), inv.args[i]) != existing.end()) {
      if (inv.global.verbosity >= 0) {
        std::printf("already listed: %s\n", inv.args[i].c_str());
      }
      continue;
    }
    DIM_RETURN_IF_ERROR(store->catalog().KeepoutAdd(image.id, inv.args[i]));
    existing.push_back(inv.args[i]);
  }
  return txn->Commit();
}

Status Rm(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store->catalog().db()));
  for (size_t i = 1; i < inv.args.size(); i++) {
    DIM_ASSIGN_OR_RETURN(bool removed, store->catalog().KeepoutRemove(image.id, inv.args[i]));
    if (!removed) {
      return Status::NotFound("'" + inv.args[i] + "' is not in the keep-out list of " +
                              image.name + " (see 'dimctl keepout list " + image.name + "')");
    }
  }
  return txn->Commit();
}

Status List(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto patterns, store->catalog().KeepoutList(image.id));
  if (inv.json()) {
    std::cout << "[";
    for (size_t i = 0; i < patterns.size(); i++) {
      std::cout << (i ? "," : "") << "{\"position\":" << i + 1
                << ",\"pattern\":" << JsonEscape(patterns[i]) << ",\"source\":"
                << JsonEscape("image " + image.name) << "}";
    }
    std::cout << "]\n";
    return Status::Ok();
  }
  for (size_t i = 0; i < patterns.size(); i++) {
    std::printf("%3zu  %s\n", i + 1, patterns[i].c_str());
  }
  return Status::Ok();
}

Status Check(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto rules, ImageRules(*store, image));
  if (inv.json()) std::cout << "[";
  for (size_t i = 1; i < inv.args.size(); i++) {
    std::string path = inv.args[i];
    bool is_dir = !path.empty() && path.back() == '/';
    if (is_dir && path.size() > 1) path.pop_back();
    // Ask the image whether the path is a directory when the user did not say.
    if (!is_dir && image.head > 0) {
      auto e = store->catalog().Lookup(image.id, image.head, path);
      if (e.ok() && e->has_value() && (*e)->type == dim::EntryType::kDir) is_dir = true;
    }
    auto m = rules.Check(path, is_dir);
    if (inv.json()) {
      std::cout << (i > 1 ? "," : "") << "{\"path\":" << JsonEscape(path)
                << ",\"kept_out\":" << (m.kept_out ? "true" : "false");
      if (m.rule) {
        std::cout << ",\"rule\":{\"position\":" << m.rule->position
                  << ",\"pattern\":" << JsonEscape(m.rule->pattern)
                  << ",\"source\":" << JsonEscape(m.rule->source) << "}"
                  << ",\"matched\":" << JsonEscape(m.matched_path);
      }
      std::cout << ",\"explanation\":" << JsonEscape(m.explanation) << "}";
    } else {
      std::printf("%s\n", m.explanation.c_str());
    }
  }
  if (inv.json()) std::cout << "]\n";
  return Status::Ok();
}

}  // namespace

Noun KeepoutCommands() {
  const Option kJson{"json", 0, "", "machine-readable output"};
  Noun n{"keepout", "paths a push never overwrites on nodes (gitignore-like patterns)", {}};
  n.verbs.push_back({"add", "IMAGE PATTERN...", "append patterns to an image's keep-out list",
                     "Patterns follow gitignore: '/etc/hostname' (anchored), 'ssh_host_*'\n"
                     "(any depth), '/var/log/' (directory), '/etc/**/local', '!/etc/x'\n"
                     "(re-include). The last matching rule decides. See docs/keepout.md.\n\n"
                     "Example:\n  dimctl keepout add debian12 /etc/hostname '/etc/ssh/ssh_host_*' /var/log/",
                     {}, 2, SIZE_MAX, Add});
  n.verbs.push_back({"rm", "IMAGE PATTERN...", "remove patterns (exactly as listed)", "", {}, 2,
                     SIZE_MAX, Rm});
  n.verbs.push_back({"list", "IMAGE", "an image's keep-out patterns in order", "", {kJson}, 1, 1,
                     List});
  n.verbs.push_back({"check", "IMAGE PATH...", "say whether PATH is kept out, and by which rule",
                     "A PATH ending in '/' is taken as a directory; otherwise the image's\n"
                     "head version decides.\n\nExample:\n  dimctl keepout check debian12 /etc/ssh/ssh_host_rsa_key",
                     {kJson}, 2, SIZE_MAX, Check});
  return n;
}

}  // namespace dimctl
