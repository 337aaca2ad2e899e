// Helpers for tests that run imaged servers in one process: a Service over a
// store with the context imaged's main builds for it.
#pragma once

#include <memory>
#include <optional>

#include <doctest/doctest.h>

#include "context.h"
#include "service.h"

namespace dimtest {

// (Re)starts *svc over config.store with a context of its own in *ctx, as a
// restarted imaged would: the old Service goes first, then its context.
inline void StartService(std::unique_ptr<imaged::ServerContext>* ctx, std::unique_ptr<imaged::Service>* svc,
                         const imaged::Config& config, std::optional<dim::auth::Secret> secret,
                         std::optional<dim::auth::ServerCredentials> credentials = std::nullopt) {
  svc->reset();
  ctx->reset();
  auto opened = imaged::ServerContext::Open(dim::Env::Posix(), config.store, nullptr);
  REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
  *ctx = std::move(*opened);
  *svc = std::make_unique<imaged::Service>(**ctx, config, std::move(secret), std::move(credentials));
}

}  // namespace dimtest
