// dimctl policy ...: an image's path policies (shared read-only, persistent,
// ephemeral), which nodes apply to their writes. See dim/policy.h.
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/policy.h"

namespace dimctl {
namespace {

using dim::Status;
namespace policy = dim::policy;

// Built-in rules first, then the image's, as a node mounts them.
Result<std::vector<policy::Rule>> EffectiveRules(dim::Store& store, const dim::ImageInfo& image) {
  std::vector<policy::Rule> rules = policy::BuiltinRules();
  DIM_ASSIGN_OR_RETURN(auto own, store.catalog().PolicyList(image.id));
  for (auto& r : own) {
    r.source = "image " + image.name;
    rules.push_back(std::move(r));
  }
  return rules;
}

Status Set(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto kind, policy::ParseKind(inv.args[1]));
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  // Validate them all first: none is set unless all are good.
  for (size_t i = 2; i < inv.args.size(); i++) DIM_RETURN_IF_ERROR(policy::ValidatePattern(inv.args[i]));
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store->catalog().db()));
  for (size_t i = 2; i < inv.args.size(); i++) {
    DIM_RETURN_IF_ERROR(store->catalog().PolicySet(image.id, {kind, inv.args[i], ""}));
  }
  return txn->Commit();
}

Status Rm(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store->catalog().db()));
  for (size_t i = 1; i < inv.args.size(); i++) {
    DIM_ASSIGN_OR_RETURN(bool removed, store->catalog().PolicyRemove(image.id, inv.args[i]));
    if (!removed) {
      return Status::NotFound("'" + inv.args[i] + "' has no policy rule in image " + image.name +
                              " (see 'dimctl policy list " + image.name + "')");
    }
  }
  return txn->Commit();
}

Status List(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto rules, EffectiveRules(*store, image));
  if (inv.json()) {
    Json list = Json::array();
    for (size_t i = 0; i < rules.size(); i++) {
      list.push_back(Json{{"position", i + 1},
                          {"policy", policy::Name(rules[i].kind)},
                          {"pattern", rules[i].pattern},
                          {"source", rules[i].source}});
    }
    PrintJson(list);
    return Status::Ok();
  }
  std::printf("image %s: %zu path policy rules (the last one matching a path or its directory wins;\n"
              "paths no rule matches are persistent)\n", image.name.c_str(), rules.size());
  for (size_t i = 0; i < rules.size(); i++) {
    std::printf("%3zu  %-10s %-40s %s\n", i + 1, policy::Name(rules[i].kind), rules[i].pattern.c_str(),
                rules[i].source.c_str());
  }
  return Status::Ok();
}

Status Check(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto rules, EffectiveRules(*store, image));
  DIM_ASSIGN_OR_RETURN(auto set, policy::PolicySet::Compile(std::move(rules)));
  Json checks = Json::array();
  for (size_t i = 1; i < inv.args.size(); i++) {
    bool is_dir = false;
    std::string path = PathArgument(*store, image, inv.args[i], &is_dir);
    const policy::Rule* rule = nullptr;
    policy::Kind kind = set.Decide(path, is_dir, &rule);
    if (inv.json()) {
      checks.push_back(Json{{"path", path},
                            {"policy", policy::Name(kind)},
                            {"pattern", rule ? rule->pattern : ""},
                            {"source", rule ? rule->source : ""}});
    } else if (rule) {
      std::printf("%s is %s: rule '%s' (%s)\n", dim::QuotePath(path).c_str(), policy::Name(kind),
                  rule->pattern.c_str(), rule->source.c_str());
    } else {
      std::printf("%s is persistent: no rule matches it\n", dim::QuotePath(path).c_str());
    }
  }
  if (inv.json()) PrintJson(checks);
  return Status::Ok();
}

}  // namespace

Noun PolicyCommands() {
  Noun n{"policy", "how nodes treat each path: readonly, persistent or ephemeral", {}};
  n.verbs.push_back({"set", "IMAGE POLICY PATTERN...", "give paths a policy (appended; a listed pattern changes in place)",
                     "POLICY is one of:\n"
                     "  readonly    shared read-only: nodes see exactly the image; writes fail\n"
                     "              with EROFS and servers refuse them\n"
                     "  persistent  the default: writes go to the node's overlay on its server\n"
                     "  ephemeral   writes stay in the node's RAM and vanish at reboot\n"
                     "Patterns use keep-out (gitignore) syntax without '!'. The last rule matching\n"
                     "a path or one of its directories decides. Built-in rules make /tmp/, /run/,\n"
                     "/var/tmp/, /var/run/, /var/lock/ and /var/cache/apt/archives/ ephemeral.\n"
                     "Rules travel with the next push; a node applies them when it mounts.\n\n"
                     "Examples:\n  dimctl policy set debian12 readonly /usr/ /opt/\n"
                     "  dimctl policy set debian12 persistent /usr/local/\n"
                     "  dimctl policy set debian12 ephemeral /var/log/journal/",
                     {}, 3, SIZE_MAX, Set});
  n.verbs.push_back({"rm", "IMAGE PATTERN...", "remove an image's rules (patterns exactly as listed)", "", {}, 2,
                     SIZE_MAX, Rm});
  n.verbs.push_back({"list", "IMAGE", "the rules nodes of IMAGE mount with: built-in, then the image's", "",
                     {kJsonOption}, 1, 1, List});
  n.verbs.push_back({"check", "IMAGE PATH...", "say which policy PATH has, and which rule decides",
                     "A PATH ending in '/' is taken as a directory; otherwise the image's\n"
                     "head version decides.\n\nExample:\n  dimctl policy check debian12 /usr/bin/ls /usr/local/bin",
                     {kJsonOption}, 2, SIZE_MAX, Check});
  return n;
}

}  // namespace dimctl
