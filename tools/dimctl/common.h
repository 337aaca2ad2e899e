// Helpers shared by dimctl commands.
#pragma once

#include <memory>

#include "cli.h"
#include "dim/store.h"

namespace dimctl {

using dim::Result;

// Opens the store at --root; with create, initializes it when missing.
dim::Result<std::unique_ptr<dim::Store>> OpenStore(const Invocation& inv, bool create);

}  // namespace dimctl
