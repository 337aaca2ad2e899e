// The boot-file signer (dim/openpgp.h), checked against the real peer: gpg
// imports the exported key and verifies the detached signatures (GRUB's own
// check runs in tests/integration/boot_grub_signed.sh).
#include "dim/openpgp.h"

#include <sys/wait.h>

#include <cstdlib>

#include <doctest/doctest.h>

#include "test_util.h"

namespace {

using dim::openpgp::SigningKey;

// gpg's status code for a command line run in a private home.
int Gpg(const dimtest::TempDir& dir, const std::string& args) {
  std::string cmd = "gpg --homedir " + dir / "gnupg" + " --batch --quiet " + args + " > " + dir / "gpg.out" + " 2>&1";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool HaveGpg() { return std::system("command -v gpg > /dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("openpgp: a key survives its file, and its fingerprint is stable") {
  auto key = SigningKey::Generate(2048, 1700000000);
  REQUIRE(key.ok());
  auto again = SigningKey::Parse(key->Serialize(), "boot-sign.key");
  REQUIRE(again.ok());
  CHECK(again->Fingerprint() == key->Fingerprint());
  CHECK(key->Fingerprint().size() == 40);
  auto bad = SigningKey::Parse("not a key\n", "/store/keys/boot-sign.key");
  REQUIRE(!bad.ok());
  CHECK(bad.status().ToString().find("/store/keys/boot-sign.key") != std::string::npos);
  CHECK(!SigningKey::Parse("created 12\nno pem here\n", "k").ok());
}

TEST_CASE("openpgp: gpg verifies a detached signature and refuses a flipped byte") {
  if (!HaveGpg()) {
    MESSAGE("gpg is not installed; skipped");
    return;
  }
  dimtest::TempDir dir;
  REQUIRE(::mkdir((dir / "gnupg").c_str(), 0700) == 0);
  auto key = SigningKey::Generate(3072, 1700000000);
  REQUIRE(key.ok());
  auto pub = key->ExportPublic("dim boot files (test)");
  REQUIRE(pub.ok());
  dimtest::WriteFile(dir / "key.pgp", *pub);
  REQUIRE(Gpg(dir, "--import " + dir / "key.pgp") == 0);
  // gpg knows the key by the fingerprint we compute.
  REQUIRE(Gpg(dir, "--with-colons --list-keys") == 0);
  CHECK(dimtest::ReadFile(dir / "gpg.out").find("fpr:::::::::" + key->Fingerprint()) != std::string::npos);

  std::string kernel(300000, '\0');
  for (size_t i = 0; i < kernel.size(); ++i) kernel[i] = static_cast<char>(i * 7 + i / 251);
  for (const std::string& data : {kernel, std::string(), std::string("set default=0\n")}) {
    auto sig = key->SignDetached(data, 1700000100);
    REQUIRE(sig.ok());
    dimtest::WriteFile(dir / "file", data);
    dimtest::WriteFile(dir / "file.sig", *sig);
    CHECK_MESSAGE(Gpg(dir, "--verify " + dir / "file.sig " + dir / "file") == 0, dimtest::ReadFile(dir / "gpg.out"));
    CHECK(dimtest::ReadFile(dir / "gpg.out").find("Good signature") != std::string::npos);
    std::string flipped = data + "x";
    if (!data.empty()) flipped = data, flipped[data.size() / 2] ^= 1;
    dimtest::WriteFile(dir / "file", flipped);
    CHECK(Gpg(dir, "--verify " + dir / "file.sig " + dir / "file") != 0);
    CHECK(dimtest::ReadFile(dir / "gpg.out").find("BAD signature") != std::string::npos);
  }
  // Another key's signature does not pass for this one.
  auto other = SigningKey::Generate(2048, 1700000000);
  REQUIRE(other.ok());
  dimtest::WriteFile(dir / "file", "data");
  dimtest::WriteFile(dir / "file.sig", *other->SignDetached("data", 1700000100));
  CHECK(Gpg(dir, "--verify " + dir / "file.sig " + dir / "file") != 0);
}
