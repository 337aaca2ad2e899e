// libFuzzer target for imaged's replay journal (<store>/replay.journal,
// dim::DecodeReplayJournal): any input either is refused with an error or
// decodes to records that encode back to exactly the bytes read (less a
// torn last record).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/replay.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "replay_journal_fuzz: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto j = dim::DecodeReplayJournal(bytes, "fuzz input");
  if (!j.ok()) {
    if (j.status().message().empty()) Fail("an error without a message");
    return 0;
  }
  std::string again(dim::kReplayJournalHeader);
  for (const auto& r : j->records) again += dim::EncodeReplayRecord(r);
  if (again.size() + j->torn_bytes != bytes.size() || bytes.compare(0, again.size(), again) != 0)
    Fail("records do not encode back to the bytes they were read from");
  return 0;
}
