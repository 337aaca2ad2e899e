#include "standby.h"

#include "dim/atomic_file.h"
#include "dim/env.h"

namespace imaged {

void Fence::Load() {
  if (loaded_) return;
  auto* env = dim::Env::Posix();
  if (auto text = env->ReadFile(store_ + "/epoch"); text.ok()) epoch_ = std::atoll(text->c_str());
  if (auto text = env->ReadFile(store_ + "/replaced-by"); text.ok()) replaced_by_ = *text;
  loaded_ = true;
}

int64_t Fence::epoch() {
  std::lock_guard<std::mutex> l(mu_);
  Load();
  return epoch_;
}

dim::Status Fence::Raise(int64_t e) {
  std::lock_guard<std::mutex> l(mu_);
  Load();
  if (e <= epoch_) return dim::Status::Ok();
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(dim::Env::Posix(), store_ + "/epoch", std::to_string(e) + "\n"));
  epoch_ = e;
  return dim::Status::Ok();
}

std::string Fence::replaced_by() {
  std::lock_guard<std::mutex> l(mu_);
  Load();
  return replaced_by_;
}

dim::Status Fence::SetReplacedBy(const std::string& what) {
  std::lock_guard<std::mutex> l(mu_);
  Load();
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(dim::Env::Posix(), store_ + "/replaced-by", what));
  replaced_by_ = what;
  return dim::Status::Ok();
}

}  // namespace imaged
