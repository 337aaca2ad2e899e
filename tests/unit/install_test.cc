// Installing nodes' disks (docs/install.md): the layout parser and its
// errors, the plan and report documents, install requests in the node
// registry (marking, cancelling, copying to second-level servers), and
// imaged's install endpoints and iPXE scripts, driven in-process.
#include <doctest/doctest.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "cluster_test_util.h"
#include "config.h"
#include "dim/api_client.h"
#include "dim/auth.h"
#include "dim/catalog.h"
#include "dim/cluster/registry.h"
#include "dim/install/layout.h"
#include "dim/install/messages.h"
#include "dim/install/state.h"
#include "dim/store.h"
#include "service.h"
#include "imaged_test_util.h"
#include "test_util.h"

using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;
namespace dc = dim::cluster;
namespace di = dim::install;

namespace {

std::string LayoutError(const std::string& text) {
  auto l = di::ParseLayout(text, "big.layout");
  REQUIRE_FALSE(l.ok());
  return l.status().message();
}

bool Has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("install layout: the default and a full layout parse, print canonically and size the disk") {
  auto def = di::ParseLayout(di::kDefaultLayout, "default");
  REQUIRE(def.ok());
  REQUIRE(def->parts.size() == 3);
  CHECK(def->parts[0].kind == di::PartKind::kBios);
  CHECK(def->parts[1].mib == 512);
  CHECK(def->parts[2].rest);
  CHECK(def->parts[2].fs == "ext4");
  CHECK(di::FormatLayout(*def) == "bios 1MiB\nesp 512MiB vfat\nroot rest ext4\n");
  // 2 MiB of GPT and alignment, 1 + 512 fixed, 512 at least for the root.
  CHECK(di::MinimumDiskBytes(*def) == uint64_t{2 + 1 + 512 + 512} << 20);
  // The shipped file is the built-in default.
  std::ifstream f(DIM_SOURCE_DIR "/install/layouts/default.layout");
  std::stringstream file;
  file << f.rdbuf();
  CHECK(file.str() == di::kDefaultLayout);

  auto full = di::ParseLayout("# a comment\n\n  esp\t1GiB  # trailing\nbios 1MiB\nswap 4096MiB\nroot rest xfs\n", "x");
  REQUIRE(full.ok());
  CHECK(di::FormatLayout(*full) == "esp 1GiB vfat\nbios 1MiB\nswap 4GiB\nroot rest xfs\n");
  auto again = di::ParseLayout(di::FormatLayout(*full), "y");
  REQUIRE(again.ok());
  CHECK(di::FormatLayout(*again) == di::FormatLayout(*full));
  CHECK(di::SfdiskScript(*full) ==
        "label: gpt\nunit: sectors\n"
        "size=1024MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=dim-esp\n"
        "size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=dim-bios\n"
        "size=4096MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=dim-swap\n"
        "type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=dim-root\n");
  // A fixed-size root: no rest at all is fine.
  auto fixed = di::ParseLayout("bios 1MiB\nesp 64MiB\nroot 2TiB\n", "z");
  REQUIRE(fixed.ok());
  CHECK(di::FormatLayout(*fixed) == "bios 1MiB\nesp 64MiB vfat\nroot 2TiB ext4\n");
}

TEST_CASE("install layout: each mistake is named with file, line and what to do") {
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MiB\nroot rest\nswap 1GiB\n"),
            "big.layout:3: only the last partition may have size 'rest'"));
  CHECK(Has(LayoutError("bios 1MiB\nboot 512MiB\n"), "big.layout:2: unknown partition 'boot'"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MiB\nesp 1GiB\nroot rest\n"),
            "big.layout:3: a second 'esp' partition (the first is on line 2)"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MB\nroot rest\n"), "big.layout:2: size '512MB' of 'esp' has unit 'MB'"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512\nroot rest\n"), "has no unit"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MiB\nroot 100MiB\n"), "big.layout:3: 'root' of 100MiB is too small: at least 512MiB"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MiB\nroot rest btrfs\n"),
            "big.layout:3: 'root' cannot have file system 'btrfs'; use ext4 or xfs"));
  CHECK(Has(LayoutError("bios 1MiB ext4\nesp 512MiB\nroot rest\n"), "it has none"));
  CHECK(Has(LayoutError("bios 1MiB\nroot rest\n"), "big.layout: no 'esp' partition"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MiB\nroot\n"), "big.layout:3: 'root' has no size"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 0MiB\nroot rest\n"), "is zero"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 99999999999TiB\nroot rest\n"), "larger than 1 PiB"));
  CHECK(Has(LayoutError("bios 1MiB\nesp 512MiB\nroot rest ext4 extra\n"), "too many fields"));
  CHECK(Has(LayoutError("bios 1MiB\r\nesp 512MiB\nroot rest\n"), "big.layout:1: contains a control"));
  CHECK(Has(LayoutError(std::string(70000, '#')), "at most 64 KiB"));
}

TEST_CASE("install report: encodes, decodes strictly, and refuses what it cannot show") {
  di::InstallReport r{7, di::ReportState::kFailed, "partition", 0, "no disk: /dev/sda does not exist"};
  const std::string body = di::EncodeReport(r);
  CHECK(body ==
        "dim-install-report 1\nrequest 7\nstate failed\nstep partition\nversion 0\nreason no disk: /dev/sda does not exist\n");
  auto back = di::DecodeReport(body);
  REQUIRE(back.ok());
  CHECK(back->request == 7);
  CHECK(back->state == di::ReportState::kFailed);
  CHECK(back->reason == r.reason);
  CHECK(di::EncodeReport(*back) == body);
  auto refused = [](const std::string& b) { return !di::DecodeReport(b).ok(); };
  CHECK(refused("dim-install-report 2\nrequest 7\nstate failed\nstep x\nversion 0\nreason \n"));
  CHECK(refused("dim-install-report 1\nrequest 0\nstate failed\nstep x\nversion 0\nreason \n"));
  CHECK(refused("dim-install-report 1\nrequest 7\nstate done\nstep x\nversion 0\nreason \n"));
  CHECK(refused("dim-install-report 1\nrequest 7\nstate failed\nstep X Y\nversion 0\nreason \n"));
  CHECK(refused("dim-install-report 1\nrequest 7\nstate installed\nstep done\nversion 0\nreason \n"));
  CHECK(refused("dim-install-report 1\nrequest 7\nstate failed\nstep x\nversion 0\nreason a \"quote\"\n"));
  CHECK(refused("dim-install-report 1\nrequest 7\nstate failed\nstep x\nversion 0\nreason \nmore\n"));
  CHECK(refused("dim-install-report 1\nrequest 7\nstate failed\nstep x\nversion 0\n"));
  CHECK(di::CleanReason("say \"no\" {x}\\\x01") == "say 'no' (x)/?");
}

TEST_CASE("install stream request: encodes, decodes strictly; bad ports and paths are refused") {
  di::StreamRequest r{42, 7475, "/target/.dim-install-root"};
  const std::string body = di::EncodeStreamRequest(r);
  CHECK(body == "dim-install-stream 1\nrequest 42\nport 7475\npath /target/.dim-install-root\n");
  auto back = di::DecodeStreamRequest(body);
  REQUIRE(back.ok());
  CHECK(back->request == 42);
  CHECK(back->port == 7475);
  CHECK(back->path == r.path);
  auto refused = [](const std::string& b) { return !di::DecodeStreamRequest(b).ok(); };
  CHECK(refused("dim-install-stream 2\nrequest 42\nport 7475\npath /t\n"));
  CHECK(refused("dim-install-stream 1\nrequest 0\nport 7475\npath /t\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 65536\npath /t\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 0\npath /t\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 7475\npath t\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 7475\npath /t/../etc\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 7475\npath /t/\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 7475\npath /t x\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 7475\npath /t\nmore\n"));
  CHECK(refused("dim-install-stream 1\nrequest 42\nport 7475\n"));
}

TEST_CASE("install plan: encodes and decodes with its layout; bad disks and images are refused") {
  auto layout = di::ParseLayout(di::kDefaultLayout, "d");
  REQUIRE(layout.ok());
  di::InstallPlan p{12, "debian12", 7, "/dev/vda", *layout};
  const std::string body = di::EncodePlan(p);
  auto back = di::DecodePlan(body);
  REQUIRE_MESSAGE(back.ok(), back.status().ToString());
  CHECK(back->disk == "/dev/vda");
  CHECK(di::EncodePlan(*back) == body);
  CHECK_FALSE(di::DecodePlan(body + "# not canonical\n").ok());
  CHECK(di::CheckDisk("").ok());
  CHECK(di::CheckDisk("/dev/disk/by-path/pci-0000:00:05.0").ok());
  CHECK(Has(di::CheckDisk("sda").message(), "is not a device path below /dev/"));
  CHECK(Has(di::CheckDisk("/dev/../etc/passwd").message(), "not a clean path"));
  CHECK(Has(di::CheckDisk("/dev/sd a").message(), "a byte other than"));
}

TEST_CASE("install keep-out file: patterns a line, comments skipped, a bad pattern named by line") {
  auto ok = di::ParseKeepoutFile("# node's own\n/etc/fstab\n\n/var/lib/local/\n!/var/lib/local/keep\n", "k");
  REQUIRE(ok.ok());
  CHECK(*ok == std::vector<std::string>{"/etc/fstab", "/var/lib/local/", "!/var/lib/local/keep"});
  auto bad = di::ParseKeepoutFile("/etc/fstab\n/etc/[bad\n", "node.keepout");
  REQUIRE_FALSE(bad.ok());
  CHECK(Has(bad.status().message(), "node.keepout:2: "));
}

namespace {

constexpr const char* kNode = "r01c1n01";

// A registered cluster (r01c1n01, r01c1n02; image "img" with one version)
// and an imaged Service over its store.
struct InstallServer {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  imaged::Config config;
  std::unique_ptr<imaged::ServerContext> ctx;
  std::unique_ptr<imaged::Service> svc;

  InstallServer() {
    REQUIRE(dim::Store::Open(dim::Env::Posix(), dir / "store", true).ok());
    auto cat = dim::Catalog::Open(dir / "store/catalog.db");
    REQUIRE(cat.ok());
    REQUIRE((*cat)->CreateImage("img", "/m").ok());
    auto loaded = dc::LoadClusterFromString(
        dc::testing::SmallXml(dc::testing::NodeXml(1, 1) + dc::testing::NodeXml(1, 2)), "c.xml", {});
    REQUIRE_MESSAGE(loaded.ok(), loaded.ToStatus().ToString());
    REQUIRE(dc::Registry((*cat)->db()).Apply(loaded.cluster, dc::DiffClusters({}, loaded.cluster), 0, 1).ok());
    config.name = "top";
    config.store = dir / "store";
    config.boot_keys = imaged::Config::BootKeys::kAny;
    dimtest::StartService(&ctx, &svc, config, secret);
  }
  std::unique_ptr<dim::Catalog> Catalog() {
    auto cat = dim::Catalog::Open(config.store + "/catalog.db");
    REQUIRE(cat.ok());
    return std::move(*cat);
  }
  int64_t Mark(const std::vector<std::string>& nodes, int64_t version = 3) {
    auto cat = Catalog();
    std::vector<di::InstallRequest> reqs;
    for (const auto& n : nodes) {
      reqs.push_back({n, 0, "img", version, "/dev/vda", di::FormatLayout(*di::ParseLayout(di::kDefaultLayout, "d")), 0});
    }
    auto r = dc::Registry(cat->db()).MarkInstall(reqs, 10);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
  // A request signed as `who` ("node:NAME" with that node's key, or
  // "server:top" with the site secret).
  Response Signed(const std::string& who, const std::string& method, const std::string& path,
                  const std::string& body = "") {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    const std::string key = who.rfind("node:", 0) == 0 ? dim::auth::NodeKey(secret, who.substr(5), 0) : secret.key;
    r.headers["x-dim-auth"] = dim::auth::HeaderTo(key, who, method, dim::CanonicalTarget(path, {}), "top",
                                                  std::time(nullptr), dim::auth::NewNonce(), body);
    return svc->Handle(r);
  }
  std::string Script(const std::string& node = kNode) {
    Request r;
    r.method = "GET";
    r.path = "/v1/boot/nodes/" + node + ".ipxe";
    auto resp = svc->Handle(r);
    REQUIRE(resp.status == 200);
    return resp.body;
  }
  std::string Report(int64_t request, di::ReportState state, const std::string& step, int64_t version,
                     const std::string& reason = "") {
    return di::EncodeReport({request, state, step, version, reason});
  }
};

}  // namespace

TEST_CASE("install registry: marking, marking again, cancelling; copies carry and check the requests") {
  InstallServer s;
  auto cat = s.Catalog();
  dc::Registry reg(cat->db());
  const int64_t before = *reg.Generation();
  const int64_t req = s.Mark({kNode});
  CHECK(req == before + 1);
  CHECK(*reg.Generation() == req);
  auto installs = reg.Installs();
  REQUIRE(installs.ok());
  REQUIRE(installs->count(kNode));
  CHECK(installs->at(kNode).disk == "/dev/vda");
  CHECK(s.Mark({kNode}) == req + 1);  // marked again: a new request
  CHECK(reg.MarkInstall({{"r09c9n99", 0, "img", 0, "", "", 0}}, 1).status().code() == dim::Code::kNotFound);

  // A second-level server copies the requests with the registry.
  TempDir leaf_dir;
  REQUIRE(dim::Store::Open(dim::Env::Posix(), leaf_dir / "store", true).ok());
  auto leaf = dim::Catalog::Open(leaf_dir / "store/catalog.db");
  REQUIRE(leaf.ok());
  auto body = reg.Export();
  REQUIRE(body.ok());
  REQUIRE(dc::Registry((*leaf)->db()).Import(*body).ok());
  CHECK(dc::Registry((*leaf)->db()).Installs()->at(kNode).request == req + 1);
  // A parent's copy whose layout would not parse is refused whole.
  REQUIRE(cat->db().Exec("UPDATE cluster_node_installs SET layout = 'bios 1MiB\n'").ok());
  auto bad = dc::Registry(cat->db()).Export();
  REQUIRE(bad.ok());
  dim::Status imported = dc::Registry((*leaf)->db()).Import(*bad);
  CHECK(Has(imported.message(), "install request of node r01c1n01: layout: no 'esp' partition"));
  CHECK(dc::Registry((*leaf)->db()).Installs()->at(kNode).layout != "bios 1MiB\n");

  auto cancelled = reg.CancelInstall({kNode, "r01c1n02"}, 20);
  REQUIRE(cancelled.ok());
  CHECK(*cancelled == std::vector<std::string>{kNode});
  CHECK(reg.Installs()->empty());
}

TEST_CASE("install endpoints: only the node itself reports, for its current request; success boots the disk") {
  InstallServer s;
  const std::string diskless = s.Script();
  CHECK_FALSE(Has(diskless, "dim.install="));
  const int64_t req = s.Mark({kNode});
  const std::string path = std::string("/v1/nodes/") + kNode + "/install-report";

  // Install mode: the initrd with the request, no key.
  std::string script = s.Script();
  CHECK(Has(script, "dim.install=" + std::to_string(req)));
  CHECK(Has(script, "dim.node=r01c1n01"));
  CHECK_FALSE(Has(s.Script("r01c1n02"), "dim.install="));

  // The plan: the node's, signed by it (or a server); no one else's.
  auto plan = s.Signed(std::string("node:") + kNode, "GET", std::string("/v1/nodes/") + kNode + "/install");
  REQUIRE_MESSAGE(plan.status == 200, plan.body);
  auto decoded = di::DecodePlan(plan.body);
  REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
  CHECK(decoded->request == req);
  CHECK(decoded->version == 3);
  CHECK(decoded->disk == "/dev/vda");
  CHECK(s.Signed("node:r01c1n02", "GET", std::string("/v1/nodes/") + kNode + "/install").status == 403);
  CHECK(s.Signed("node:r01c1n02", "GET", "/v1/nodes/r01c1n02/install").status == 409);  // not marked

  // The stream request: the node itself, for its current request, a body
  // that decodes; anyone else, an older request or a bad body is refused
  // before a sender is started.
  const std::string stream = std::string("/v1/nodes/") + kNode + "/install-stream";
  const std::string ask = di::EncodeStreamRequest({req, 7475, "/target/.dim-install-root"});
  CHECK(s.Signed("node:r01c1n02", "POST", stream, ask).status == 403);
  CHECK(s.Signed("server:top", "POST", stream, ask).status == 403);
  CHECK(s.Signed(std::string("node:") + kNode, "POST", stream, "stream me\n").status == 400);
  auto stale = s.Signed(std::string("node:") + kNode, "POST", stream,
                        di::EncodeStreamRequest({req - 1, 7475, "/target/.dim-install-root"}));
  CHECK(stale.status == 409);
  CHECK(Has(stale.body, "its current request is " + std::to_string(req)));

  // Reports: unsigned, by another node, by a server: refused, nothing changes.
  const std::string ok = s.Report(req, di::ReportState::kInstalled, "done", 3);
  Request unsigned_req;
  unsigned_req.method = "POST";
  unsigned_req.path = path;
  unsigned_req.body = ok;
  CHECK(s.svc->Handle(unsigned_req).status == 403);
  CHECK(s.Signed("node:r01c1n02", "POST", path, ok).status == 403);
  CHECK(s.Signed("server:top", "POST", path, ok).status == 403);
  CHECK(Has(s.Script(), "dim.install="));
  // A malformed body, or a report on an older request: refused.
  CHECK(s.Signed(std::string("node:") + kNode, "POST", path, "installed\n").status == 400);
  CHECK(s.Signed(std::string("node:") + kNode, "POST", path, s.Report(req - 1, di::ReportState::kInstalled, "done", 3))
            .status == 409);

  // A failure keeps it in install mode and is shown with step and reason.
  auto failed = s.Signed(std::string("node:") + kNode, "POST", path,
                         s.Report(req, di::ReportState::kFailed, "partition", 0, "disk /dev/vda is 100 MiB, the layout needs 1027 MiB"));
  CHECK(failed.status == 200);
  CHECK(Has(s.Script(), "dim.install="));
  REQUIRE(s.svc->Installs().size() == 1);
  CHECK(s.svc->Installs()[0].state == "failed");
  CHECK(s.svc->Installs()[0].step == "partition");
  CHECK(Has(s.svc->Installs()[0].reason, "the layout needs 1027 MiB"));

  // Success: the next boot is from the local disk, and stays so across a restart.
  CHECK(s.Signed(std::string("node:") + kNode, "POST", path, ok).status == 200);
  script = s.Script();
  CHECK(Has(script, "sanboot --no-describe --drive 0x80"));
  CHECK(Has(script, "exit"));
  CHECK_FALSE(Has(script, "kernel "));
  CHECK(s.svc->Installs().at(0).state == "installed");
  dimtest::StartService(&s.ctx, &s.svc, s.config, s.secret);
  CHECK(Has(s.Script(), "sanboot"));

  // Marked again: installs again; cancelled: diskless.
  const int64_t again = s.Mark({kNode});
  CHECK(Has(s.Script(), "dim.install=" + std::to_string(again)));
  REQUIRE(dc::Registry(s.Catalog()->db()).CancelInstall({kNode}, 30).ok());
  CHECK(s.Script() == diskless);
}
