// imaged's TLS settings and what a node is told: the configuration keys and
// their refusals, and iPXE scripts that send nodes to the TLS port when the
// plain port serves boot files only (docs/imaged.md, "TLS"). The refusals on
// the wire are tests/integration/tls.sh.
#include <doctest/doctest.h>

#include <string>

#include "config.h"
#include "transport.h"

namespace {

const std::string kTop = "role = top\nname = t\nlisten = 10.0.0.1:7480\n";
const std::string kTls =
    "tls_cert = /etc/dim/tls/t.crt\ntls_key = /etc/dim/tls/t.key\ntls_ca = /etc/dim/tls/ca.crt\n";

std::string Error(const std::string& text) {
  auto c = imaged::ParseConfig(text, "imaged.conf");
  return c.ok() ? "" : c.status().message();
}

}  // namespace

TEST_CASE("tls config: the keys, their defaults and the https advertise URL") {
  auto c = imaged::ParseConfig(
      kTop + kTls + "tls_crl = /etc/dim/tls/ca.crl\nplain_listen = 0.0.0.0:7481\n", "imaged.conf");
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  CHECK(c->tls());
  CHECK(c->tls_crl == "/etc/dim/tls/ca.crl");
  CHECK(c->tls_client_cert_required);
  CHECK(c->plain_port == 7481);
  CHECK(c->plain_serves == imaged::Config::PlainServes::kBoot);
  CHECK(c->advertise == "https://10.0.0.1:7480");
  auto plain = imaged::ParseConfig(kTop, "imaged.conf");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->tls());
  CHECK(plain->advertise == "http://10.0.0.1:7480");
}

TEST_CASE("tls config: incomplete or contradictory settings are refused with what to write") {
  CHECK(Error(kTop + "tls_cert = /etc/dim/tls/t.crt\ntls_ca = /etc/dim/tls/ca.crt\n")
            .find("tls_cert and tls_key go together") != std::string::npos);
  CHECK(Error(kTop + "tls_cert = /a.crt\ntls_key = /a.key\n").find("TLS needs tls_ca") !=
        std::string::npos);
  CHECK(Error(kTop + "plain_listen = 0.0.0.0:7481\n").find("without tls_cert") !=
        std::string::npos);
  CHECK(Error(kTop + kTls + "tls_client_cert = maybe\n").find("'required'") != std::string::npos);
  CHECK(Error(kTop + kTls + "plain_serves = all\n").find("'nodes'") != std::string::npos);
  CHECK(Error(kTop + "tls_key = relative.key\n").find("absolute") != std::string::npos);
  const std::string leaf = "role = leaf\nname = l\nparent = http://10.0.0.1:7480\n";
  CHECK(Error(leaf + kTls).find("write parent = https://") != std::string::npos);
  CHECK(Error("role = leaf\nname = l\nparent = https://10.0.0.1:7480\n" + kTls).empty());
  // The buddy and the standby are reached like the parent: over TLS with tls_ca, never in clear.
  const std::string tls_leaf = "role = leaf\nname = l\nparent = https://10.0.0.1:7480\n" + kTls;
  CHECK(Error(tls_leaf + "buddy = http://10.0.0.2:7480\n").find("write buddy = https://10.0.0.2:7480") !=
        std::string::npos);
  CHECK(Error(tls_leaf + "parent_standby = http://10.0.0.3:7480\n").find("write parent_standby = https://") !=
        std::string::npos);
  CHECK(Error(kTop + kTls + "standby = http://10.0.0.2:7480\n").find("write standby = https://") !=
        std::string::npos);
  CHECK(Error(kTop + "standby = https://10.0.0.2:7480\n").find("needs tls_ca") != std::string::npos);
  CHECK(Error(tls_leaf + "buddy = https://10.0.0.2:7480\n").empty());
}

TEST_CASE(
    "tls: a node's iPXE script names the TLS port when the plain port serves boot files only") {
  const std::string script =
      "#!ipxe\nkernel http://10.0.0.1:7481/v1/boot/files/vmlinuz initrd=initrd.img "
      "dim.server=http://10.0.0.1:7481 "
      "dim.image=deb dim.node=n1\ninitrd http://10.0.0.1:7481/v1/boot/files/initrd.img\nboot\n";
  auto c = imaged::ParseConfig(kTop + kTls + "plain_listen = 0.0.0.0:7481\n", "imaged.conf");
  REQUIRE(c.ok());
  const std::string tls = imaged::NodeScript(*c, script);
  CHECK(tls.find("dim.server=https://10.0.0.1:7480 dim.image=deb") != std::string::npos);
  // iPXE's own downloads stay on the plain port.
  CHECK(tls.find("kernel http://10.0.0.1:7481/v1/boot/files/vmlinuz") != std::string::npos);
  CHECK(imaged::NodeScript(*c, "dim.server=http://[fd00::1]:7481 dim.image=deb") ==
        "dim.server=https://[fd00::1]:7480 dim.image=deb");
  CHECK(imaged::NodeScript(*c, "x dim.server=http://boot.example\n") ==
        "x dim.server=https://boot.example:7480\n");

  // A node network the site trusts, or no TLS at all: the script as it is.
  auto nodes = imaged::ParseConfig(
      kTop + kTls + "plain_listen = 0.0.0.0:7481\nplain_serves = nodes\n", "imaged.conf");
  REQUIRE(nodes.ok());
  CHECK(imaged::NodeScript(*nodes, script) == script);
  CHECK(imaged::NodeScript(*imaged::ParseConfig(kTop, "imaged.conf"), script) == script);
}
