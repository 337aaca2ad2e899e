// dim-receive: the receiving end of `dimctl clone`, small and static so it
// runs in the initrd as well as on servers. Serves one stream, then exits
// 0 when the payload is in place, 1 when it failed (docs/design.md#bulk-cloning).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dim/auth.h"
#include "dim/clone/engine.h"
#include "dim/env.h"
#include "dim/owner.h"

namespace {

constexpr const char* kUsage =
    "usage: dim-receive [--name NAME] [--listen HOST:PORT] (--secret FILE | --key-file FILE)\n"
    "                   [--store DIR] [--under DIR] [--linger SECONDS]\n"
    "Receives one stream of `dimctl clone` and forwards it to the next hosts.\n"
    "Started again after it was killed mid-stream, it rejoins at the tail of the\n"
    "chain and resumes after the chunks its journal (beside the staging file) verifies.\n"
    "  --name      this host's name in the sender's plan (default: the host name)\n"
    "  --listen    address to listen on (default :7475, every address)\n"
    "  --secret    the site secret (servers): the key is derived for NAME\n"
    "  --key-file  this node's key as hex (`dimctl node key`), for hosts without the secret\n"
    "  --store     accept a store seed (`dimctl clone --servers`) into this store\n"
    "  --under     accept file and tree targets only at or below DIR\n"
    "  --linger    seconds to wait for the sender's last status request (default 60)\n";

int Usage(const char* why) {
  std::fprintf(stderr, "dim-receive: %s\n%s", why, kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  dim::clone::ReceiverOptions opts;
  opts.listen = ":7475";
  std::string secret_file, key_file;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) opts.name = host;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--name" && value(&opts.name)) {
    } else if (a == "--listen" && value(&opts.listen)) {
    } else if (a == "--secret" && value(&secret_file)) {
    } else if (a == "--key-file" && value(&key_file)) {
    } else if (a == "--store" && value(&opts.store)) {
    } else if (a == "--under" && value(&opts.under)) {
    } else if (a == "--linger" && value(&v)) {
      opts.linger_s = std::atoi(v.c_str());
    } else {
      return Usage(("unknown or incomplete option " + a).c_str());
    }
  }
  if (secret_file.empty() == key_file.empty()) return Usage("give exactly one of --secret and --key-file");
  if (!secret_file.empty()) {
    auto secret = dim::auth::Secret::Load(secret_file);
    if (!secret.ok()) return Usage(secret.status().message().c_str());
    opts.key = dim::auth::NodeKey(*secret, opts.name);
  } else {
    auto text = dim::Env::Posix()->ReadFile(key_file);
    if (!text.ok()) return Usage(text.status().message().c_str());
    auto key = dim::auth::KeyFromHex(*text);
    if (!key.ok()) return Usage((key_file + ": " + key.status().message()).c_str());
    opts.key = *key;
  }
  if (!opts.store.empty()) {
    // Root seeding a store another user owns (imaged's `dim`) writes as that user.
    auto acted = dim::ActAsDirOwner(opts.store);
    if (!acted.ok()) return Usage(acted.status().message().c_str());
  }
  dim::Status s = dim::clone::Receive(opts);
  if (!s.ok()) {
    std::fprintf(stderr, "dim-receive: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}
