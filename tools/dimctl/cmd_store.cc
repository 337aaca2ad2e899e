// dimctl store ...: init, info, gc, compact, fsck.
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/auth.h"
#include "dim/image.h"
#include "dim/owner.h"
#include "dim/catalog.h"
#include "dim/identity.h"
#include "dim/publish_keys.h"
#include "dim/root.h"
#include "dim/sign.h"

namespace dimctl {

std::string PathArgument(dim::Store& store, const dim::ImageInfo& image, std::string path, bool* is_dir) {
  *is_dir = !path.empty() && path.back() == '/';
  if (*is_dir && path.size() > 1) path.pop_back();
  if (!*is_dir && image.head > 0) {
    auto e = store.catalog().Lookup(image.id, image.head, path);
    if (e.ok() && e->has_value() && (*e)->type == dim::EntryType::kDir) *is_dir = true;
  }
  return path;
}

dim::Result<std::unique_ptr<dim::Store>> OpenStore(const Invocation& inv, bool create) {
  DIM_RETURN_IF_ERROR(dim::ActAsDirOwner(inv.global.root).status());
  return OpenStoreAsRoot(inv, create);
}

dim::Result<std::unique_ptr<dim::Store>> OpenStoreAsRoot(const Invocation& inv, bool create) {
  DIM_ASSIGN_OR_RETURN(auto store, dim::Store::Open(dim::Env::Posix(), inv.global.root, create));
  if (store->tightened()) {
    std::fprintf(stderr,
                 "dimctl: note: %s was readable by other users; it is now private to its owner "
                 "(directories 0700, files 0600; node overlays under nodes/ unchanged)\n",
                 inv.global.root.c_str());
  }
  return store;
}

namespace {

using dim::Status;

// "USER" or "USER:GROUP" (names or numbers); USER alone takes USER's group.
dim::Result<std::pair<uid_t, gid_t>> ParseOwner(const std::string& spec) {
  size_t colon = spec.find(':');
  std::string user = spec.substr(0, colon);
  std::string group = colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto number = [](const std::string& s, long* out) {
    char* end = nullptr;
    errno = 0;
    *out = std::strtol(s.c_str(), &end, 10);
    return !s.empty() && errno == 0 && *end == 0 && *out >= 0;
  };
  uid_t uid;
  gid_t gid;
  long n;
  if (struct passwd* pw = ::getpwnam(user.c_str())) {
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  } else if (number(user, &n)) {
    uid = static_cast<uid_t>(n);
    gid = static_cast<gid_t>(n);
  } else {
    return Status::InvalidArgument(
        "no user '" + user +
        "' (create it first, e.g. with systemd-sysusers for dim's sysusers.d file)");
  }
  if (!group.empty()) {
    if (struct group* gr = ::getgrnam(group.c_str())) {
      gid = gr->gr_gid;
    } else if (number(group, &n)) {
      gid = static_cast<gid_t>(n);
    } else {
      return Status::InvalidArgument("no group '" + group + "'");
    }
  }
  return std::make_pair(uid, gid);
}

// Hands the whole store to USER[:GROUP]. What is below an editing session's
// directory and an unconverted node overlay keeps its owners as image data,
// so both must be gone first.
Status ChownStore(const std::string& root, const std::string& spec) {
  DIM_ASSIGN_OR_RETURN(auto owner, ParseOwner(spec));
  for (const char* sub : {"/sessions", "/nodes"}) {
    dim::DirPtr d(::opendir((root + sub).c_str()));
    if (!d) continue;
    while (struct dirent* e = ::readdir(d.get())) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      struct stat st;
      if (std::string(sub) == "/sessions") {
        return Status::Busy("an editing session of '" + name + "' is in " + root + "/sessions/" +
                            name + "; finish or discard it, then run 'dimctl store chown' again");
      }
      if (::lstat((root + sub + "/" + name + "/upper").c_str(), &st) == 0) {
        return Status::Unsupported("the overlay of node " + name +
                                   " is in the old format, whose files carry the node's owners; "
                                   "convert it first ('dimctl node ls " +
                                   name +
                                   "'), then run "
                                   "'dimctl store chown' again");
      }
    }
  }
  return dim::ChownTree(root, owner.first, owner.second);
}

Status Init(Invocation& inv) {
  DIM_RETURN_IF_ERROR(dim::Store::Init(dim::Env::Posix(), inv.global.root));
  if (std::string owner = inv.get_or("owner", ""); !owner.empty()) {
    DIM_RETURN_IF_ERROR(ChownStore(inv.global.root, owner));
  }
  if (inv.global.verbosity >= 0) std::printf("store ready at %s\n", inv.global.root.c_str());
  return Status::Ok();
}

Status Chown(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStoreAsRoot(inv, false));
  // No commit, import or collection may create root's files meanwhile.
  DIM_ASSIGN_OR_RETURN(dim::FileLock lock, store->LockStore(/*exclusive=*/true, /*wait=*/false));
  DIM_RETURN_IF_ERROR(ChownStore(inv.global.root, inv.args[0]));
  if (inv.global.verbosity >= 0) {
    std::printf("%s now belongs to %s; what dimctl creates there as root is handed to it\n",
                inv.global.root.c_str(), inv.args[0].c_str());
  }
  return Status::Ok();
}

Status Secret(Invocation& inv) {
  std::string path = inv.args.empty() ? "/etc/dim/secret" : inv.args[0];
  DIM_RETURN_IF_ERROR(dim::auth::CreateSecretFile(path));
  if (inv.global.verbosity >= 0) {
    std::printf("created %s (mode 0600); copy it to every image server and to the machines\n"
                "that run dimctl push\n", path.c_str());
  }
  return Status::Ok();
}

Status Info(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  uint64_t objects = 0, bytes = 0;
  DIM_RETURN_IF_ERROR(store->objects().ForEach([&](const dim::Digest&, uint64_t b) {
    objects++;
    bytes += b;
    return Status::Ok();
  }));
  DIM_ASSIGN_OR_RETURN(auto images, store->catalog().ListImages());
  DIM_ASSIGN_OR_RETURN(uint64_t queued, store->objects().QueuedForCompression());
  if (inv.json()) {
    PrintJson(Json{{"root", store->root()},
                   {"schema", dim::Catalog::SchemaVersion()},
                   {"images", images.size()},
                   {"objects", objects},
                   {"object_bytes", bytes},
                   {"queued_for_compression", queued}});
  } else {
    std::printf("root:     %s\nschema:   %d\nimages:   %zu\nobjects:  %llu (%s on disk)\n",
                store->root().c_str(), dim::Catalog::SchemaVersion(), images.size(),
                static_cast<unsigned long long>(objects), HumanBytes(bytes).c_str());
    if (queued) {
      std::printf("queued:   %llu objects to compress (imaged does it in the background, or run\n"
                  "          'dimctl store compact')\n",
                  static_cast<unsigned long long>(queued));
    }
  }
  return Status::Ok();
}

Status Gc(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  bool dry = inv.flag("dry-run");
  DIM_ASSIGN_OR_RETURN(auto st, dim::CollectGarbage(*store, dry));
  if (inv.json()) {
    PrintJson(Json{{"referenced", st.referenced},
                   {"present", st.present},
                   {"removed", st.removed},
                   {"bytes_freed", st.bytes_freed},
                   {"temps_removed", st.temps_removed},
                   {"dry_run", dry}});
  } else if (inv.global.verbosity >= 0) {
    std::printf("%s %llu of %llu objects (%s); %llu referenced\n",
                dry ? "would remove" : "removed", static_cast<unsigned long long>(st.removed),
                static_cast<unsigned long long>(st.present), HumanBytes(st.bytes_freed).c_str(),
                static_cast<unsigned long long>(st.referenced));
    if (st.temps_removed > 0) {
      std::printf("removed %llu staging files that interrupted writes left\n",
                  static_cast<unsigned long long>(st.temps_removed));
    }
  }
  return Status::Ok();
}

Status Compact(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  dim::CompactOptions o;
  o.all = inv.flag("all");
  DIM_ASSIGN_OR_RETURN(auto st, dim::CompactStore(*store, o, /*wait=*/true));
  if (inv.json()) {
    PrintJson(Json{{"examined", st.examined},
                   {"compressed", st.compressed},
                   {"bytes_before", st.bytes_before},
                   {"bytes_after", st.bytes_after},
                   {"damaged", st.damaged}});
  } else if (inv.global.verbosity >= 0) {
    std::printf("compressed %llu of %llu objects examined: %s -> %s\n",
                static_cast<unsigned long long>(st.compressed),
                static_cast<unsigned long long>(st.examined), HumanBytes(st.bytes_before).c_str(),
                HumanBytes(st.bytes_after).c_str());
  }
  if (st.damaged) {
    return Status::Corruption(std::to_string(st.damaged) +
                              " objects failed their hash check and were left alone; run "
                              "'dimctl store fsck' to see which paths use them");
  }
  return Status::Ok();
}

Status Fsck(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto report, dim::CheckStore(*store));
  if (inv.json()) {
    Json problems = Json::array();
    for (const auto& p : report.problems) {
      problems.push_back(Json{{"object", p.object}, {"used_by", p.what}, {"problem", p.problem}});
    }
    PrintJson(Json{{"versions_checked", report.versions_checked},
                   {"objects_checked", report.objects_checked},
                   {"problems", std::move(problems)}});
  } else {
    for (const auto& p : report.problems) {
      if (p.object.empty()) {
        std::printf("BAD version %s\n    %s\n", p.what.c_str(), p.problem.c_str());
      } else {
        std::printf("BAD %s used by %s\n    %s\n", p.object.c_str(), p.what.c_str(), p.problem.c_str());
      }
    }
    if (inv.global.verbosity >= 0) {
      std::printf("%llu versions and %llu objects checked, %zu problems\n",
                  static_cast<unsigned long long>(report.versions_checked),
                  static_cast<unsigned long long>(report.objects_checked), report.problems.size());
    }
  }
  if (!report.problems.empty()) {
    return Status::Corruption(std::to_string(report.problems.size()) +
                              " problems: damaged versions, or entries using damaged or missing objects (listed above)");
  }
  return Status::Ok();
}

// The top server's version-signing key pair, in the store (imaged signs
// each version it publishes with it).
Status KeyInit(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  dim::Env* env = dim::Env::Posix();
  const std::string priv = dim::sign::PrivateKeyPath(store->root()), pub = dim::sign::PublicKeyPath(store->root());
  if (env->Exists(priv)) {
    return Status::AlreadyExists(priv + " exists; 'dimctl key show' prints its public key (a new key would "
                                 "make every leaf and node refuse versions until they get it)");
  }
  DIM_RETURN_IF_ERROR(env->MkdirAll(store->root() + "/keys", 0700));
  DIM_ASSIGN_OR_RETURN(auto key, dim::sign::PrivateKey::Generate());
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, pub, key.Public().Hex() + "\n"));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, priv, key.Hex() + "\n"));
  if (inv.global.verbosity >= 0) {
    std::printf("%s\ncreated %s; imaged signs every version it publishes from now on (push again to sign the\n"
                "published one). Give the public key above to the leaves (imaged.conf: publish_key = ...)\n"
                "and to the nodes (dimctl initrd build puts %s into the initrd)\n",
                key.Public().Hex().c_str(), priv.c_str(), pub.c_str());
  }
  return Status::Ok();
}

// The store's rotation record: the chain so far (empty before the first).
dim::Result<dim::proto::KeyChain> ReadChain(dim::Env* env, const std::string& path) {
  auto text = env->ReadFile(path);
  if (!text.ok() && text.status().code() == dim::Code::kNotFound) return dim::proto::KeyChain{};
  if (!text.ok()) return text.status();
  auto chain = dim::proto::DecodeKeyChain(*text);
  if (!chain.ok()) return Status::Corruption(path + ": " + chain.status().message());
  return chain;
}

// The newest generation a chain names (0: the first key).
int64_t NewestGeneration(const dim::proto::KeyChain& chain) {
  int64_t g = 0;
  for (const auto& r : chain.rotations) {
    if (auto said = dim::proto::DecodeKeyRotation(r.statement); said.ok()) g = std::max(g, said->generation);
  }
  return g;
}

// Re-signs every kept version that has a root hash with the current key, so
// checkers that followed the rotation (and refuse the retired key) can use
// them. Returns how many.
dim::Result<int> ResealVersions(dim::Store& store, const dim::sign::PrivateKey& key) {
  int n = 0;
  dim::Catalog& cat = store.catalog();
  DIM_ASSIGN_OR_RETURN(auto images, cat.ListImages());
  for (const auto& img : images) {
    DIM_ASSIGN_OR_RETURN(auto versions, cat.ListVersions(img.id));
    DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(cat.db()));
    for (const auto& v : versions) {
      if (v.root.IsZero()) continue;  // never published since roots exist: sealed at its next publish
      DIM_ASSIGN_OR_RETURN(std::string sig, key.Sign(dim::SealMessage(img.name, v.number, v.root)));
      DIM_RETURN_IF_ERROR(cat.SetVersionSeal(img.id, v.number, v.root, sig));
      n++;
    }
    DIM_RETURN_IF_ERROR(txn->Commit());
  }
  return n;
}

// A new publish key, announced by a statement the old key signs. The new key
// is staged first (publish.key.next), then the statement recorded, then the
// key switched: a crash in between is finished by running it again, and the
// chain never names a key the store has lost.
Status KeyRotate(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  dim::Env* env = dim::Env::Posix();
  const std::string priv = dim::sign::PrivateKeyPath(store->root()), pub = dim::sign::PublicKeyPath(store->root());
  const std::string chain_path = dim::sign::ChainPath(store->root()), next_path = priv + ".next";
  DIM_ASSIGN_OR_RETURN(auto old, dim::identity::LoadPublishKey(store->root()));
  if (!old) return Status::NotFound("this store has no publish key to rotate; create it with 'dimctl key init'");
  DIM_ASSIGN_OR_RETURN(auto chain, ReadChain(env, chain_path));
  const int64_t generation = NewestGeneration(chain) + 1;
  std::optional<dim::sign::PrivateKey> next;
  if (auto staged = env->ReadFile(next_path); staged.ok()) {
    auto k = dim::sign::PrivateKey::FromHex(*staged);
    if (k.ok()) next = std::move(*k);  // an interrupted rotation: the same new key
  }
  if (!next) {
    DIM_ASSIGN_OR_RETURN(auto fresh, dim::sign::PrivateKey::Generate());
    DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, next_path, fresh.Hex() + "\n"));
    next = std::move(fresh);
  }
  DIM_ASSIGN_OR_RETURN(auto statement, dim::publish::SignRotation(*old, next->Public(), generation,
                                                                  static_cast<int64_t>(::time(nullptr))));
  chain.rotations.push_back(std::move(statement));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, chain_path, dim::proto::Encode(chain)));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, pub, next->Public().Hex() + "\n"));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, priv, next->Hex() + "\n"));
  (void)::unlink(next_path.c_str());
  DIM_ASSIGN_OR_RETURN(int resealed, ResealVersions(*store, *next));
  if (inv.global.verbosity >= 0) {
    std::printf("%s\nrotated the publish key to generation %lld (the retired key %s signed the rotation);\n"
                "re-signed %d kept versions. imaged signs with the new key from now on; second-level\n"
                "servers, mounts and dim-agents that trust an earlier key follow the rotation on\n"
                "GET /v1/publish-keys and refuse the retired key's signatures afterwards. Give the new\n"
                "key to new servers (publish_key) and rebuild the initrd (dimctl initrd build) when you can.\n",
                next->Public().Hex().c_str(), static_cast<long long>(generation),
                old->Public().Hex().substr(0, 12).c_str(), resealed);
  }
  return Status::Ok();
}

Status KeyShow(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  auto text = dim::Env::Posix()->ReadFile(dim::sign::PublicKeyPath(store->root()));
  if (!text.ok() && text.status().code() == dim::Code::kNotFound) {
    return Status::NotFound("this store has no signing key; create it with 'dimctl key init' on the top server");
  }
  if (!text.ok()) return text.status();
  DIM_ASSIGN_OR_RETURN(auto key, dim::sign::PublicKey::FromHex(*text));
  std::printf("%s\n", key.Hex().c_str());
  return Status::Ok();
}

}  // namespace

Noun KeyCommands() {
  Noun n{"key", "the top server's key that signs published versions", {}};
  n.verbs.push_back({"init", "", "create the store's Ed25519 version-signing key",
                     "Writes <store>/keys/publish.key (private, 0600) and publish.pub. imaged on\n"
                     "the top server then signs the root hash of every version it publishes;\n"
                     "leaves with publish_key and nodes whose initrd holds the public key refuse\n"
                     "versions without a valid signature.",
                     {}, 0, 0, KeyInit});
  n.verbs.push_back({"show", "", "print the public key (for imaged.conf's publish_key)", "", {}, 0, 0, KeyShow});
  n.verbs.push_back({"rotate", "", "replace the publish key; the old one signs the new one's rotation",
                     "Makes a new key, records a rotation statement signed by the old key (generation,\n"
                     "new public key, time) in <store>/keys/publish.chain, switches imaged to the new\n"
                     "key and re-signs every kept version. Servers and nodes configured with any\n"
                     "earlier key follow the chain (GET /v1/publish-keys) and from then on refuse\n"
                     "anything the retired key signs. Every rotation is final: use it yearly, and at\n"
                     "once when the key may be stolen (docs/security.md, \"Rotating the publish key\").\n"
                     "Example: dimctl key rotate && dimctl key show",
                     {}, 0, 0, KeyRotate});
  return n;
}

Noun StoreCommands() {
  Noun n{"store", "the store itself: init, info, garbage collection, compaction, integrity check", {}};
  n.verbs.push_back({"init",
                     "",
                     "create an empty store at --root",
                     "With --owner dim the store belongs to the user imaged runs as (the\n"
                     "unit's User=dim); dimctl run as root then hands everything it creates\n"
                     "in the store to that user.",
                     {{"owner", 0, "USER[:GROUP]", "give the new store to USER (e.g. dim)"}},
                     0,
                     0,
                     Init});
  n.verbs.push_back({"chown",
                     "USER[:GROUP]",
                     "hand an existing store to USER (e.g. dim)",
                     "Gives every file and directory of the store to USER and USER's group\n"
                     "(or GROUP), for an imaged running as that user. Stop imaged first.\n"
                     "Refused while an editing session is open. 'dimctl store chown root'\n"
                     "gives the store back to root.",
                     {},
                     1,
                     1,
                     Chown});
  n.verbs.push_back({"info", "", "size and contents of the store", "", {kJsonOption}, 0, 0, Info});
  n.verbs.push_back({"secret", "[FILE]", "create the shared secret servers authenticate with",
                     "Writes 64 random bytes to FILE (default /etc/dim/secret), mode 0600;\n"
                     "refuses to overwrite an existing file.", {}, 0, 1, Secret});
  n.verbs.push_back({"gc", "", "delete objects no stored version references",
                     "Run after 'image rm' or 'image prune'. Waits for nothing: fails if a\n"
                     "commit is running.",
                     {kJsonOption, {"dry-run", 'n', "", "only report what would be removed"}}, 0, 0, Gc});
  n.verbs.push_back({"compact", "", "compress objects that commits stored uncompressed",
                     "Imports and commits store new objects uncompressed and queue them, so\n"
                     "they cost about a copy; imaged compresses the queue in the background.\n"
                     "This does it now, e.g. on a store no imaged serves. Each object is\n"
                     "replaced atomically; commits may run meanwhile.",
                     {kJsonOption, {"all", 0, "", "examine every object, not only the queued ones"}},
                     0, 0, Compact});
  n.verbs.push_back({"fsck", "", "verify every kept version and referenced object",
                     "Checks each kept version's entries against its root hash, and every\n"
                     "object against its hash. Lists each damaged version, and each damaged\n"
                     "or missing object with the image, versions and path that use it.\n"
                     "Exit status 1 when anything is wrong.",
                     {kJsonOption}, 0, 0, Fsck});
  return n;
}

}  // namespace dimctl
