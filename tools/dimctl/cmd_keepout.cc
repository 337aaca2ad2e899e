// dimctl keepout ...: the keep-out list of an image (paths a push never overwrites).
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/cluster/registry.h"
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

}  // namespace

// The rules that protect a node: its image's list, then the cluster
// description's additions (site, group chain, node) as last applied.
Result<std::vector<dim::keepout::Rule>> EffectiveRules(dim::Store& store, const std::string& node_name,
                                                       std::string* image_name) {
  dim::cluster::Registry registry(store.catalog().db());
  DIM_ASSIGN_OR_RETURN(auto snap, registry.Load());
  if (!snap.registered) {
    return Status::NotFound("no nodes registered: run 'dimctl cluster apply FILE' first");
  }
  const dim::cluster::Node* node = snap.cluster.FindNode(node_name);
  if (!node) {
    return Status::NotFound("no node named '" + node_name + "' in the registry (see 'dimctl node list')");
  }
  *image_name = node->image;
  std::vector<dim::keepout::Rule> rules;
  auto image = store.catalog().GetImage(node->image);
  if (image.ok()) {
    DIM_ASSIGN_OR_RETURN(auto patterns, store.catalog().KeepoutList(image->id));
    for (auto& p : patterns) {
      rules.push_back({p, "image " + node->image, static_cast<int>(rules.size()) + 1});
    }
  } else if (image.status().code() != dim::Code::kNotFound) {
    return image.status();
  }
  // Attribute each accumulated cluster rule to the nearest group that lists it.
  std::vector<const dim::cluster::Group*> chain;
  for (const auto* g = snap.cluster.FindGroup(node->group); g && chain.size() < 64;
       g = g->parent.empty() ? nullptr : snap.cluster.FindGroup(g->parent)) {
    chain.push_back(g);
  }
  for (const auto& p : node->keepout) {
    std::string source = "cluster: site or node " + node->name;
    for (const auto* g : chain) {
      if (std::find(g->keepout.begin(), g->keepout.end(), p) != g->keepout.end()) {
        source = "cluster: group " + g->name;
        break;
      }
    }
    rules.push_back({p, source, static_cast<int>(rules.size()) + 1});
  }
  return rules;
}

namespace {

Status Effective(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  std::string image;
  DIM_ASSIGN_OR_RETURN(auto rules, EffectiveRules(*store, inv.args[0], &image));
  DIM_ASSIGN_OR_RETURN(auto compiled, dim::keepout::RuleSet::Compile(rules));
  if (inv.json()) {
    Json list = Json::array();
    for (const auto& r : rules) {
      list.push_back(Json{{"position", r.position}, {"pattern", r.pattern}, {"source", r.source}});
    }
    PrintJson(Json{{"node", inv.args[0]}, {"image", image}, {"rules", std::move(list)}});
    return Status::Ok();
  }
  std::printf("node %s, image %s: %zu keep-out rules (later rules win)\n", inv.args[0].c_str(),
              image.c_str(), rules.size());
  for (const auto& r : rules) {
    std::printf("%3d  %-40s %s\n", r.position, r.pattern.c_str(), r.source.c_str());
  }
  return Status::Ok();
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
    Json list = Json::array();
    for (size_t i = 0; i < patterns.size(); i++) {
      list.push_back(Json{{"position", i + 1}, {"pattern", patterns[i]}, {"source", "image " + image.name}});
    }
    PrintJson(list);
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
  dim::keepout::RuleSet rules;
  if (auto node = inv.get("node")) {
    std::string node_image;
    DIM_ASSIGN_OR_RETURN(auto list, EffectiveRules(*store, *node, &node_image));
    if (node_image != image.name) {
      return Status::InvalidArgument("node " + *node + " runs image '" + node_image + "', not '" +
                                     image.name + "'");
    }
    DIM_ASSIGN_OR_RETURN(rules, dim::keepout::RuleSet::Compile(std::move(list)));
  } else {
    DIM_ASSIGN_OR_RETURN(rules, ImageRules(*store, image));
  }
  Json checks = Json::array();
  for (size_t i = 1; i < inv.args.size(); i++) {
    bool is_dir = false;
    std::string path = PathArgument(*store, image, inv.args[i], &is_dir);
    auto m = rules.Check(path, is_dir);
    if (inv.json()) {
      Json c{{"path", path}, {"kept_out", m.kept_out}};
      if (m.rule) {
        c["rule"] = Json{{"position", m.rule->position}, {"pattern", m.rule->pattern}, {"source", m.rule->source}};
        c["matched"] = m.matched_path;
      }
      c["explanation"] = m.explanation;
      checks.push_back(std::move(c));
    } else {
      std::printf("%s\n", m.explanation.c_str());
    }
  }
  if (inv.json()) PrintJson(checks);
  return Status::Ok();
}

}  // namespace

Noun KeepoutCommands() {
  Noun n{"keepout", "paths a push never overwrites on nodes (gitignore-like patterns)", {}};
  n.verbs.push_back({"add", "IMAGE PATTERN...", "append patterns to an image's keep-out list",
                     "Patterns follow gitignore: '/etc/hostname' (anchored), 'ssh_host_*'\n"
                     "(any depth), '/var/log/' (directory), '/etc/**/local', '!/etc/x'\n"
                     "(re-include). The last matching rule decides. See docs/keepout.md.\n\n"
                     "Example:\n  dimctl keepout add debian12 /etc/hostname '/etc/ssh/ssh_host_*' /var/log/",
                     {}, 2, SIZE_MAX, Add});
  n.verbs.push_back({"rm", "IMAGE PATTERN...", "remove patterns (exactly as listed)", "", {}, 2,
                     SIZE_MAX, Rm});
  n.verbs.push_back({"list", "IMAGE", "an image's keep-out patterns in order", "", {kJsonOption}, 1, 1,
                     List});
  n.verbs.push_back({"check", "IMAGE PATH...", "say whether PATH is kept out, and by which rule",
                     "A PATH ending in '/' is taken as a directory; otherwise the image's\n"
                     "head version decides.\n\nExample:\n  dimctl keepout check debian12 /etc/ssh/ssh_host_rsa_key",
                     {kJsonOption, {"node", 0, "NODE", "use NODE's effective rules (image + cluster)"}},
                     2, SIZE_MAX, Check});
  n.verbs.push_back({"effective", "NODE",
                     "the rules that protect NODE: its image's, then the cluster's additions",
                     "Image rules come first, then the keep-out additions of the cluster\n"
                     "description (site, group chain, node) as last applied with\n"
                     "'dimctl cluster apply'. Later rules win.\n\n"
                     "Example:\n  dimctl keepout effective r01c1n01",
                     {kJsonOption}, 1, 1, Effective});
  return n;
}

}  // namespace dimctl
