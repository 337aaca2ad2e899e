// Helpers shared by dimctl commands.
#pragma once

#include <memory>

#include "cli.h"
#include "dim/store.h"

namespace dimctl {

using dim::Result;

// Opens the store at --root; with create, initializes it when missing. Run
// as root on a store that belongs to another user (imaged's `dim`), dimctl
// takes that user's file-system identity first (dim::ActAsDirOwner): the commands that write only the store then cannot
// be steered outside it by the owner's symlinks.
dim::Result<std::unique_ptr<dim::Store>> OpenStore(const Invocation& inv, bool create);
// The same with root's identity kept, for the commands that also write
// outside the store (checkout, shell, node view, cluster gen, store chown).
dim::Result<std::unique_ptr<dim::Store>> OpenStoreAsRoot(const Invocation& inv, bool create);

// A PATH argument of a check command: a trailing '/' says directory;
// otherwise the image's head version says whether it is one.
std::string PathArgument(dim::Store& store, const dim::ImageInfo& image, std::string path, bool* is_dir);

}  // namespace dimctl
