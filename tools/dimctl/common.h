// Helpers shared by dimctl commands.
#pragma once

#include <memory>

#include "cli.h"
#include "dim/store.h"

namespace dimctl {

using dim::Result;

// Opens the store at --root; with create, initializes it when missing.
dim::Result<std::unique_ptr<dim::Store>> OpenStore(const Invocation& inv, bool create);

// A PATH argument of a check command: a trailing '/' says directory;
// otherwise the image's head version says whether it is one.
std::string PathArgument(dim::Store& store, const dim::ImageInfo& image, std::string path, bool* is_dir);

}  // namespace dimctl
