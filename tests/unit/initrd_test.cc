// initrd builder parts: the newc writer's determinism and layout, ELF
// dependency reading, and module-closure over a small modules.dep.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>

#include "dim/env.h"
#include "dim/initrd/cpio.h"
#include "elf_deps.h"
#include "kmod.h"
#include "test_util.h"

using dim::initrd::CpioArchive;

namespace {

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("cpio: the same entries in any order give the same bytes") {
  CpioArchive a, b;
  REQUIRE(a.AddFile("/bin/tool", "abc", 0755).ok());
  REQUIRE(a.AddSymlink("/bin/sh", "/bin/busybox").ok());
  REQUIRE(a.AddCharDev("/dev/console", 0600, 5, 1).ok());
  REQUIRE(b.AddCharDev("dev/console", 0600, 5, 1).ok());
  REQUIRE(b.AddSymlink("bin/sh", "/bin/busybox").ok());
  REQUIRE(b.AddFile("./bin//tool", "abc", 0755).ok());
  CHECK(a.Serialize() == b.Serialize());
  // Parents are implicit directories and come before their contents.
  CHECK(a.Paths() == std::vector<std::string>{"bin", "bin/sh", "bin/tool", "dev", "dev/console"});
}

TEST_CASE("cpio: newc records with fixed metadata, 4-byte alignment and a trailer") {
  CpioArchive a;
  REQUIRE(a.AddFile("/init", "#!/bin/sh\n", 0755).ok());
  std::string out = a.Serialize(0);
  REQUIRE(out.size() % 4 == 0);
  // ino 1, mode 0100755, uid 0, gid 0, nlink 1, mtime 0, size 10, ..., namesize 5
  CHECK(out.substr(0, 110) ==
        "070701" "00000001" "000081ED" "00000000" "00000000" "00000001" "00000000" "0000000A"
        "00000000" "00000000" "00000000" "00000000" "00000005" "00000000");
  CHECK(out.substr(110, 5) == std::string("init\0", 5));
  CHECK(out.substr(116, 10) == "#!/bin/sh\n");
  CHECK(out.find("TRAILER!!!") != std::string::npos);
}

TEST_CASE("cpio: conflicting entries and bad paths are errors naming the path") {
  CpioArchive a;
  REQUIRE(a.AddFile("/etc/x", "1", 0644).ok());
  CHECK(a.AddFile("/etc/x", "1", 0644).ok());  // identical: fine
  auto s = a.AddFile("/etc/x", "2", 0644);
  CHECK(s.code() == dim::Code::kAlreadyExists);
  CHECK(s.message().find("/etc/x") != std::string::npos);
  CHECK(!a.AddFile("/etc/x/y", "", 0644).ok());  // below a file
  CHECK(!a.AddFile("/../etc", "", 0644).ok());
  CHECK(!a.AddDir("/").ok());
}

TEST_CASE("elf: a dynamic executable names its loader and libraries; text is not ELF") {
  auto bytes = dim::Env::Posix()->ReadFile("/bin/ls");
  REQUIRE(bytes.ok());
  auto info = dim::initrd::ParseElf(*bytes, "/bin/ls");
  REQUIRE(info.ok());
  CHECK(info->is_elf);
  CHECK(info->interp.find("ld-linux") != std::string::npos);
  CHECK(std::find(info->needed.begin(), info->needed.end(), "libc.so.6") != info->needed.end());

  auto text = dim::initrd::ParseElf("#!/bin/sh\n", "script");
  REQUIRE(text.ok());
  CHECK(!text->is_elf);
  // Truncated headers are reported, not read past.
  auto cut = dim::initrd::ParseElf(std::string_view(*bytes).substr(0, 100), "cut");
  CHECK(!cut.ok());

  std::vector<dim::initrd::RuntimeFile> files;
  dim::initrd::LibraryResolver resolver(dim::initrd::SystemLibraryDirs());
  REQUIRE(resolver.Resolve("/bin/ls", files).ok());
  bool has_libc = false;
  for (const auto& f : files) has_libc |= f.path.ends_with("/libc.so.6");
  CHECK(has_libc);
}

TEST_CASE("kmod: closure over modules.dep, index files restricted to the closure") {
  dimtest::TempDir dir;
  std::string m = dir / "lib/modules/6.1.0-test";
  REQUIRE(dim::Env::Posix()->MkdirAll(m, 0755).ok());
  WriteText(m + "/modules.dep",
            "kernel/a/virtio_net.ko: kernel/a/net_failover.ko kernel/b/failover.ko\n"
            "kernel/a/net_failover.ko: kernel/b/failover.ko\n"
            "kernel/b/failover.ko:\n"
            "kernel/c/other-mod.ko:\n");
  WriteText(m + "/modules.alias",
            "alias virtio:d00000001v* virtio_net\nalias pci:v1* other_mod\n");
  WriteText(m + "/modules.builtin", "kernel/net/packet/af_packet.ko\n");

  auto k = dim::initrd::FindKernel(dir.path());
  REQUIRE(k.ok());
  CHECK(k->version == "6.1.0-test");
  auto idx = dim::initrd::ModuleIndex::Load(k->modules_dir);
  REQUIRE(idx.ok());
  CHECK(idx->Has("other-mod"));
  CHECK(idx->IsBuiltin("af_packet"));
  auto files = idx->Closure({"virtio-net"});
  REQUIRE(files.ok());
  CHECK(*files == std::vector<std::string>{"kernel/a/net_failover.ko", "kernel/a/virtio_net.ko",
                                           "kernel/b/failover.ko"});
  auto index = idx->IndexFiles(*files);
  CHECK(index["modules.alias"] == "alias virtio:d00000001v* virtio_net\n");
  CHECK(index["modules.dep"].find("other") == std::string::npos);
  auto missing = idx->Closure({"nosuch"});
  CHECK(missing.status().code() == dim::Code::kNotFound);

  auto none = dim::initrd::FindKernel("9.9.9-none", dir.path());
  CHECK(none.status().message().find("linux-image-9.9.9-none") != std::string::npos);
}
