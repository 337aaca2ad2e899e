// dimctl server promote: makes the top's standby the top (docs/design.md,
// "No single point of failure"). The standby publishes from then on at a
// higher epoch; leaves follow it and refuse the old top.
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/api_client.h"
#include "servers.h"

namespace dimctl {
namespace {

using dim::Status;

Status Promote(Invocation& inv) {
  const std::string& url = inv.args[0];
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument("'" + url + "' is not a server URL like http://10.0.0.2:7480");
  }
  DIM_ASSIGN_OR_RETURN(auto client, Connect(inv, url));
  DIM_ASSIGN_OR_RETURN(std::string answer, client->Post("/v1/server/promote", "{}"));
  if (inv.json()) {
    std::cout << answer << "\n";
  } else {
    std::printf("%s is the top server now (epoch %s); point dimctl at it (DIM_SERVER=%s)\n",
                dim::JsonField(answer, "server").c_str(), dim::JsonField(answer, "epoch").c_str(), url.c_str());
  }
  return Status::Ok();
}

}  // namespace

Noun ServerCommands() {
  Noun n{"server", "the top server and its standby", {}};
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
