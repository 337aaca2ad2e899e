#include "dim/cluster/load.h"

#include <sys/stat.h>

#include "dim/cluster/values.h"
#include "dim/env.h"

#include "spec.h"

namespace dim::cluster {

std::string Diagnostic::ToString() const {
  std::string out = where.ToString() + (warning ? ": warning: <" : ": error: <") + element + ">: " + problem;
  if (!fix.empty()) out += (problem.ends_with('?') ? " " : "; ") + fix;
  return out;
}

Status LoadResult::ToStatus() const {
  if (ok()) return Status::Ok();
  std::string msg;
  for (const auto& d : diagnostics) msg += (msg.empty() ? "" : "\n") + d.ToString();
  msg += "\n" + std::to_string(diagnostics.size()) + " error(s)";
  return Status::InvalidArgument(msg);
}

LoadResult LoadClusterFromString(std::string_view text, const std::string& file,
                                 const PriorAddresses& prior) {
  internal::Diagnostics diag;
  internal::Spec spec;
  LoadResult out;
  if (text.size() > static_cast<size_t>(kMaxDescriptionBytes)) {
    out.diagnostics.push_back({{file, 1, 1}, "xml",
                               "the document is " + std::to_string(text.size()) + " bytes; at most " +
                                   std::to_string(kMaxDescriptionBytes) + " are read",
                               "is it the right file? split the cluster otherwise"});
    return out;
  }
  if (internal::ParseSpec(text, file, spec, diag)) out.cluster = internal::Resolve(spec, prior, diag);
  // The generators check every value again; whatever the loader accepts must
  // pass there, or `validate` would pass a file `gen` refuses.
  if (diag.size() == 0) {
    if (Status s = CheckClusterValues(out.cluster); !s.ok()) {
      diag.Error(spec.site.loc.where, "site", s.message(),
                 "this is a bug in dim's loader, which should have named the value; please report it");
    }
  }
  out.diagnostics = diag.Take();
  out.warnings = diag.TakeWarnings();
  return out;
}

Result<LoadResult> LoadClusterFile(const std::string& path, const PriorAddresses& prior) {
  // A description of the largest cluster the loader's list caps allow is far
  // smaller; this bounds what a wrong path (a disk image, /dev/zero) costs.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > kMaxDescriptionBytes) {
    return Status::InvalidArgument(path + " is " + std::to_string(st.st_size) +
                                   " bytes; a cluster description has at most " +
                                   std::to_string(kMaxDescriptionBytes) + ": is it the right file?");
  }
  auto text = Env::Posix()->ReadFile(path);
  if (!text.ok()) return text.status();
  return LoadClusterFromString(*text, path, prior);
}

Result<Cluster> LoadValidCluster(const std::string& path, const PriorAddresses& prior) {
  DIM_ASSIGN_OR_RETURN(LoadResult r, LoadClusterFile(path, prior));
  if (!r.ok()) return r.ToStatus();
  return std::move(r.cluster);
}

PriorAddresses AddressesOf(const Cluster& cluster) {
  PriorAddresses out;
  for (const auto& n : cluster.nodes) {
    for (const auto& itf : n.interfaces) out[itf.network][n.name] = itf.ip;
  }
  return out;
}

}  // namespace dim::cluster
