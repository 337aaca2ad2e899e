// Rotating the top's publish key (dim/publish_keys.h): a checker follows an
// unbroken chain of statements, each signed by the key it retires, never goes
// back, and refuses what the retired key signs once it saw the rotation.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dim/env.h"
#include "dim/publish_keys.h"
#include "test_util.h"

namespace {

using dim::proto::KeyChain;
using dim::publish::Follow;
using dim::publish::SignRotation;
using dim::publish::Trust;
using dim::publish::Walk;
using dim::sign::PrivateKey;

PrivateKey NewKey() { return *PrivateKey::Generate(); }

dim::proto::SignedRotation Rotation(const PrivateKey& from, const PrivateKey& to, int64_t generation) {
  return *SignRotation(from, to.Public(), generation, 1700000000 + generation);
}

Walk From(const PrivateKey& k, int64_t generation = -1) {
  Walk w;
  w.keys.push_back(k.Public());
  w.generation = generation;
  return w;
}

// A signature with k over a message the checker verifies.
std::string Signed(const PrivateKey& k, const std::string& message) { return *k.Sign(message); }

}  // namespace

TEST_CASE("publish keys: a checker follows an unbroken chain from any key it trusts") {
  PrivateKey k0 = NewKey(), k1 = NewKey(), k2 = NewKey();
  KeyChain chain{{Rotation(k0, k1, 1), Rotation(k1, k2, 2)}};
  auto from0 = Follow(From(k0), chain, "top");
  REQUIRE(from0.ok());
  CHECK(from0->steps == 2);
  CHECK(from0->generation == 2);
  CHECK(from0->keys.back() == k2.Public());
  // Configured with the second key (a newer initrd): the first statement is
  // not its business.
  auto from1 = Follow(From(k1), chain, "top");
  REQUIRE(from1.ok());
  CHECK(from1->steps == 1);
  CHECK(from1->keys.back() == k2.Public());
  // Statements in any order.
  KeyChain shuffled{{chain.rotations[1], chain.rotations[0]}};
  CHECK(Follow(From(k0), shuffled, "top")->keys.back() == k2.Public());
  // The codec carries the chain whole.
  auto again = dim::proto::DecodeKeyChain(dim::proto::Encode(chain));
  REQUIRE(again.ok());
  CHECK(Follow(From(k0), *again, "top")->keys.back() == k2.Public());
}

TEST_CASE("publish keys: a broken chain or a statement with the wrong signer leads nowhere") {
  PrivateKey k0 = NewKey(), k1 = NewKey(), k2 = NewKey(), stranger = NewKey();
  // The middle statement missing: k1 -> k2 is signed by a key k0 never named.
  auto broken = Follow(From(k0), KeyChain{{Rotation(k1, k2, 2)}}, "leaf");
  REQUIRE(broken.ok());
  CHECK(broken->steps == 0);
  CHECK(broken->keys.back() == k0.Public());
  // A statement that claims k0 as its signer but is signed by another key.
  auto forged = Rotation(stranger, k1, 1);
  forged.statement = dim::proto::Encode(dim::proto::KeyRotation{1, k0.Public().Hex(), stranger.Public().Hex(), 1});
  auto wrong = Follow(From(k0), KeyChain{{forged}}, "leaf");
  REQUIRE(wrong.ok());
  CHECK(wrong->steps == 0);
  // The statement changed after signing (another key named).
  auto altered = Rotation(k0, k1, 1);
  altered.statement = dim::proto::Encode(dim::proto::KeyRotation{1, k0.Public().Hex(), stranger.Public().Hex(), 1700000001});
  CHECK(Follow(From(k0), KeyChain{{altered}}, "leaf")->steps == 0);
  // Malformed signatures and statements are skipped, not trusted.
  auto bad = Rotation(k0, k1, 1);
  bad.signature = "zz";
  CHECK(Follow(From(k0), KeyChain{{bad}}, "leaf")->steps == 0);
  CHECK(!dim::proto::DecodeKeyRotation(R"({"generation":0,"previous":"a","key":"b","time":1})").ok());
}

TEST_CASE("publish keys: a replayed older chain or generation never takes a checker back") {
  PrivateKey k0 = NewKey(), k1 = NewKey(), k2 = NewKey(), k3 = NewKey();
  auto at2 = Follow(From(k0), KeyChain{{Rotation(k0, k1, 1), Rotation(k1, k2, 2)}}, "top");
  REQUIRE(at2.ok());
  // The old chain alone: nothing to follow from k2.
  auto replayed = Follow(*at2, KeyChain{{Rotation(k0, k1, 1)}}, "leaf");
  REQUIRE(replayed.ok());
  CHECK(replayed->keys.back() == k2.Public());
  // A statement by the current key that does not go forward in generation,
  // or back to a key it had: skipped.
  CHECK(Follow(*at2, KeyChain{{Rotation(k2, k3, 2)}}, "leaf")->keys.back() == k2.Public());
  CHECK(Follow(*at2, KeyChain{{Rotation(k2, k0, 3)}}, "leaf")->keys.back() == k2.Public());
  CHECK(Follow(*at2, KeyChain{{Rotation(k2, k3, 3)}}, "top")->keys.back() == k3.Public());
}

TEST_CASE("publish keys: a fork signed by the retired key after the rotation is refused") {
  PrivateKey k0 = NewKey(), k1 = NewKey(), thief = NewKey();
  auto rotated = Follow(From(k0), KeyChain{{Rotation(k0, k1, 1)}}, "top");
  REQUIRE(rotated.ok());
  // Whoever holds k0 names another successor: a fork, refused with what it means.
  auto fork = Follow(*rotated, KeyChain{{Rotation(k0, k1, 1), Rotation(k0, thief, 1)}}, "leaf");
  REQUIRE(!fork.ok());
  CHECK(fork.status().code() == dim::Code::kPermissionDenied);
  CHECK(fork.status().message().find("compromised") != std::string::npos);
  // Two successors of the key trusted now: refused, neither taken.
  auto two = Follow(From(k0), KeyChain{{Rotation(k0, k1, 1), Rotation(k0, thief, 1)}}, "leaf");
  CHECK(two.status().code() == dim::Code::kPermissionDenied);
}

TEST_CASE("publish keys: a Trust keeps its chain across restarts and refuses the retired key") {
  dimtest::TempDir dir;
  dim::Env* env = dim::Env::Posix();
  const std::string file = dir.path() + "/publish.chain";
  PrivateKey k0 = NewKey(), k1 = NewKey(), k2 = NewKey(), thief = NewKey();
  const std::string chain = dim::proto::Encode(KeyChain{{Rotation(k0, k1, 1), Rotation(k1, k2, 2)}});
  const std::string msg = "dim version\nbase\n3\n";
  {
    auto t = Trust::Open(k0.Public(), file, env);
    REQUIRE(t.ok());
    CHECK((*t)->Verify(msg, Signed(k0, msg)));
    CHECK(!(*t)->Verify(msg, Signed(k2, msg)));  // no fetch: the rotation is not known yet
    auto moved = (*t)->Advance(chain, "top");
    REQUIRE(moved.ok());
    CHECK(*moved == 2);
    CHECK((*t)->generation() == 2);
    CHECK((*t)->rotations_seen() == 2);
    CHECK((*t)->Verify(msg, Signed(k2, msg)));
    // Final: the retired keys sign nothing this checker accepts.
    CHECK(!(*t)->Verify(msg, Signed(k0, msg)));
    CHECK(!(*t)->Verify(msg, Signed(k1, msg)));
    // A replayed older chain changes nothing, and is not kept.
    CHECK(*(*t)->Advance(dim::proto::Encode(KeyChain{{Rotation(k0, k1, 1)}}), "leaf") == 0);
    CHECK(*env->ReadFile(file) == chain);
    // The thief's fork of k0: refused.
    auto fork = (*t)->Advance(dim::proto::Encode(KeyChain{{Rotation(k0, thief, 1)}}), "leaf");
    CHECK(fork.status().code() == dim::Code::kPermissionDenied);
    CHECK((*t)->Hex() == k2.Public().Hex());
  }
  // A restart with the configured key: the kept chain, walked again.
  auto t = Trust::Open(k0.Public(), file, env);
  REQUIRE(t.ok());
  CHECK((*t)->Hex() == k2.Public().Hex());
  CHECK(!(*t)->Verify(msg, Signed(k0, msg)));
  // The file is a cache, not a source of trust: a chain from another key
  // leads nowhere from k0; one that does not decode is named.
  REQUIRE(env->WriteFileAtomic(file, dim::proto::Encode(KeyChain{{Rotation(thief, k1, 1)}}), {}).ok());
  CHECK((*Trust::Open(k0.Public(), file, env))->Hex() == k0.Public().Hex());
  REQUIRE(env->WriteFileAtomic(file, "{\"rotations\":7}", {}).ok());
  auto bad = Trust::Open(k0.Public(), file, env);
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find(file) != std::string::npos);
  CHECK(bad.status().message().find("restore it from a backup, or remove it") != std::string::npos);
  // A kept chain holding a fork of a key it passed: refused the same way,
  // saying what to do (it was only ever written after a walk succeeded).
  REQUIRE(env->WriteFileAtomic(file, dim::proto::Encode(KeyChain{{Rotation(k0, k1, 1), Rotation(k0, thief, 1)}}), {})
              .ok());
  auto forked = Trust::Open(k0.Public(), file, env);
  REQUIRE(!forked.ok());
  CHECK(forked.status().code() == dim::Code::kPermissionDenied);
  CHECK(forked.status().message().find("restore it from a backup, or remove it") != std::string::npos);
}

TEST_CASE("publish keys: a signature of a newer key makes the Trust ask its server for the chain") {
  PrivateKey k0 = NewKey(), k1 = NewKey();
  const std::string chain = dim::proto::Encode(KeyChain{{Rotation(k0, k1, 1)}});
  auto t = Trust::Open(k0.Public(), "", dim::Env::Posix());
  REQUIRE(t.ok());
  int asked = 0;
  std::vector<std::string> said;
  (*t)->SetFetch(
      [&]() -> dim::Result<std::pair<std::string, std::string>> {
        asked++;
        return std::make_pair(chain, std::string("http://leaf:7780"));
      },
      [&](const std::string& m) { said.push_back(m); });
  const std::string msg = "dim copy\nregistry\n-\n";
  CHECK((*t)->Verify(msg, Signed(k1, msg)));
  CHECK(asked == 1);
  REQUIRE(said.size() == 1);
  CHECK(said[0].find("rotated") != std::string::npos);
  // Verified with the newest key, without asking again.
  CHECK((*t)->Verify(msg, Signed(k1, msg)));
  CHECK(asked == 1);
  CHECK(!(*t)->Verify(msg, Signed(k0, msg)));
}
