// dimctl server: second-level servers' own credentials (enrol; docs/imaged.md,
// "Enrolled servers") and the top's standby (promote; docs/design.md, "No
// single point of failure": the standby publishes from then on at a higher
// epoch; leaves follow it and refuse the old top).
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/api_client.h"
#include "dim/atomic_file.h"
#include "dim/auth.h"
#include "dim/identity.h"
#include "dim/store.h"
#include "servers.h"

namespace dimctl {
namespace {

using dim::Status;

Status Enrol(Invocation& inv) {
  const std::string& name = inv.args[0];
  // The store decides the generation; opened as dimctl opens it elsewhere
  // (as its owner when run as root on a `dim` store).
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  std::string secret_path = inv.get_or("secret", "");
  if (secret_path.empty()) {
    const char* e = std::getenv("DIM_SECRET");
    secret_path = e && *e ? e : "/etc/dim/secret";
  }
  DIM_ASSIGN_OR_RETURN(auto secret, dim::auth::Secret::Load(secret_path));
  const std::string out = inv.get_or("out", name + ".cred");
  // The file first (refusing to replace one), then the new generation: a
  // failed write leaves the server's old credentials valid.
  dim::AtomicFileOptions opts;
  opts.mode = 0600;
  opts.hand_to_dir_owner = false;
  opts.replace = inv.flag("force");
  // A server below another second-level server: checked before anything is written.
  const std::string parent = inv.get_or("parent", "");
  DIM_RETURN_IF_ERROR(dim::identity::CheckParent(store->root(), name, parent));
  const std::string buddy = inv.get_or("buddy", "");
  if (buddy == name) return Status::InvalidArgument("server " + name + " cannot be its own buddy (--buddy)");
  DIM_ASSIGN_OR_RETURN(int64_t was, dim::identity::EnrolledGeneration(store->root(), name));
  dim::auth::ServerCredentials next{name, was + 1, dim::auth::ServerKey(secret, name, was + 1), parent, buddy};
  auto f = dim::AtomicFile::Create(out, opts);
  if (!f.ok()) {
    if (f.status().code() == dim::Code::kAlreadyExists)
      return Status::AlreadyExists(out + " exists; move it away or pass --force");
    return f.status();
  }
  DIM_RETURN_IF_ERROR(f->Append(next.Encode()));
  DIM_RETURN_IF_ERROR(f->Commit());
  DIM_ASSIGN_OR_RETURN(auto made, dim::identity::Enrol(store->root(), secret, name, parent, buddy));
  if (made.generation != next.generation) {
    return Status::Conflict("another enrolment of " + name + " ran at the same time; enrol it again");
  }
  if (inv.global.verbosity >= 0) {
    std::printf("%s: credentials generation %lld written to %s%s\n"
                "Install it on %s as /etc/dim/server.cred (mode 0600, owned by the user imaged runs as),\n"
                "set 'credentials = /etc/dim/server.cred' in its imaged.conf, remove the site secret\n"
                "from it and restart imaged.\n",
                name.c_str(), static_cast<long long>(made.generation), out.c_str(),
                was > 0 ? " (the previous credentials are refused from now on)" : "", name.c_str());
    if (!parent.empty()) {
      std::printf("It follows %s: set 'parent' in its imaged.conf to %s's URL. %s lets it in\n"
                  "(to replicate only) within a few seconds, once it has taken the new link keys from\n"
                  "its own parent.\n",
                  parent.c_str(), parent.c_str(), parent.c_str());
    }
    if (!buddy.empty()) {
      DIM_ASSIGN_OR_RETURN(auto theirs, dim::identity::EnrolmentOf(store->root(), buddy));
      std::printf("Its buddy is %s: set 'buddy' in its imaged.conf to %s's URL. %s",
                  buddy.c_str(), buddy.c_str(),
                  theirs.buddy == name
                      ? "The two check each other's copies with keys the top hands each (within a round).\n"
                      : ("Enrol " + buddy + " with --buddy " + name + " too: the pair counts once both name each "
                         "other.\n").c_str());
    }
  }
  return Status::Ok();
}

Status Promote(Invocation& inv) {
  const std::string& url = inv.args[0];
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument("'" + url + "' is not a server URL like http://10.0.0.2:7480");
  }
  DIM_ASSIGN_OR_RETURN(auto client, Connect(inv, url));
  DIM_ASSIGN_OR_RETURN(auto answer, client->Promote());
  if (inv.json()) {
    std::cout << dim::proto::Encode(answer) << "\n";
  } else {
    std::printf("%s is the top server now (epoch %lld); point dimctl at it (DIM_SERVER=%s)\n", answer.server.c_str(),
                static_cast<long long>(answer.epoch), url.c_str());
  }
  return Status::Ok();
}

}  // namespace

Noun ServerCommands() {
  Noun n{"server", "second-level servers' credentials, the top server and its standby", {}};
  n.verbs.push_back(
      {"enrol", "NAME", "write credentials for second-level server NAME (run on the top server)",
       "Writes NAME's key (derived from the site secret and a generation the top's\n"
       "store records) to FILE, mode 0600. NAME signs its requests to the top with\n"
       "it and verifies dimctl's requests with it; the top then lets NAME only\n"
       "replicate (no publishing, pinning, provisioning or node overlays) and\n"
       "hands it the keys of the nodes the registry assigns to it. Enrolling NAME\n"
       "again retires its previous credentials (a stolen copy is refused).\n"
       "With --parent P, NAME follows the second-level server P instead of the top\n"
       "(a tree: top, regional, rack): NAME signs to P with a key derived from its\n"
       "own, which the top hands P (P cannot act as NAME anywhere else), and gets\n"
       "its nodes' keys through P, wrapped so that only NAME reads them. P must be\n"
       "enrolled and not below NAME.\n"
       "With --buddy B, B keeps the second copy of the overlays of NAME's nodes and\n"
       "NAME of B's (imaged.conf 'buddy'): enrol both naming each other; each signs\n"
       "to the other with a key derived from its own, which the top hands the other,\n"
       "and each lets the other only copy the overlays of the nodes the two serve.\n\n"
       "Examples:\n  dimctl server enrol rack1 --out /root/rack1.cred\n"
       "  dimctl server enrol regional1 --out /root/regional1.cred\n"
       "  dimctl server enrol rack7 --parent regional1 --out /root/rack7.cred\n"
       "  dimctl server enrol rack1 --buddy rack2 --out /root/rack1.cred --force\n"
       "  dimctl server enrol rack2 --buddy rack1 --out /root/rack2.cred --force",
       {kSecretOption,
        {"out", 'o', "FILE", "where to write the credentials (default NAME.cred)"},
        {"parent", 0, "SERVER", "the enrolled second-level server NAME follows (default: the top)"},
        {"buddy", 0, "SERVER", "the server that keeps copies of NAME's node overlays (enrol it naming NAME too)"},
        {"force", 'f', "", "replace FILE if it exists"}},
       1, 1, Enrol});
  n.verbs.push_back({"promote", "URL", "make the standby at URL the top server (the old top is fenced)",
                     "The standby (role = standby in its imaged.conf) keeps every version the top\n"
                     "published. Promoted, it publishes them at the next epoch: leaves that name it\n"
                     "as parent_standby follow it and refuse the old top from then on, and the old\n"
                     "top refuses to publish once it can reach it. Its master trees: dimctl image\n"
                     "checkout IMAGE DIR there. Its signing key: copy <store>/keys/publish.key first.\n\n"
                     "Example:\n  dimctl server promote http://10.0.0.2:7480",
                     {kSecretOption, kJsonOption}, 1, 1, Promote});
  return n;
}

}  // namespace dimctl
