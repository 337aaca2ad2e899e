// The resolved cluster: every node with its final name, addresses, image,
// kernel arguments, keep-out list and image server, after inheritance
// (site -> group -> node) and derivation. Generators and dimctl read only this.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dim/cluster/address.h"

namespace dim::cluster {

// Where an element (or attribute) starts in the source, 1-based.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  std::string ToString() const;  // "cluster.xml:12:5"
};

struct AddressRange {
  Ipv4 first;
  Ipv4 last;
  bool Contains(Ipv4 ip) const { return first <= ip && ip <= last; }
};

// How a network gives addresses to interfaces without ip=: from the taxonomy
// position (node-base + index), or the lowest free address of a pool, kept
// stable by the allocations persisted in the registry (docs/cluster-xml.md).
enum class Allocation { kPosition, kSequential };

struct Network {
  std::string name;
  Subnet subnet;
  std::optional<Ipv4> gateway;
  std::vector<Ipv4> dns;
  std::string domain;       // empty: the site domain
  int mtu = 0;              // 0: not announced
  int vlan = 0;             // 0: untagged
  // IPv6 (dual stack): the network's prefix; an interface or server address
  // without ip6= is the prefix plus its IPv4 address's offset in `subnet`.
  std::optional<Subnet6> ipv6_prefix;
  std::vector<Ipv6> dns6;      // IPv6 entries of dns=
  std::string dhcp_interface;  // the DHCP server's interface here (Kea DHCPv6, radvd)
  std::optional<AddressRange> dynamic;  // discovery pool for unknown MACs
  std::optional<Ipv4> node_base;        // position 0, or the pool start (sequential)
  Allocation allocation = Allocation::kPosition;
  SourceLocation where;

  // The IPv6 address paired with IPv4 address `ip` of this network; nullopt
  // without an IPv6 prefix.
  std::optional<Ipv6> Ipv6For(Ipv4 ip) const;
};

struct Image {
  std::string name;
  std::string kernel = "vmlinuz";
  std::string initrd = "initrd.img";
  SourceLocation where;
};

enum class ServerRole { kTop, kSecondLevel };

struct RackSpan {
  int first = 0;
  int last = 0;
};

struct Server {
  std::string name;
  ServerRole role = ServerRole::kSecondLevel;
  std::string network;
  Ipv4 address;
  std::optional<Ipv6> address6;  // on a network with an IPv6 prefix
  std::string boot_url;  // its imaged: "http://10.1.0.11:7480" unless given
  std::vector<RackSpan> racks;
  SourceLocation where;
};

struct Group {
  std::string name;
  std::string parent;  // inherits="", empty for none
  std::optional<std::string> image, server, kernel_args;
  std::vector<std::string> keepout;
  SourceLocation where;
};

// Position in the naming taxonomy; a level the pattern does not use stays unset.
struct Position {
  std::optional<int> rack, chassis, slot;
  bool empty() const { return !rack && !chassis && !slot; }
};

struct Interface {
  std::string network;
  Mac mac;
  Ipv4 ip;
  bool ip_explicit = false;  // given in the XML rather than derived
  std::optional<Ipv6> ip6;   // on a network with an IPv6 prefix
  bool ip6_explicit = false;
  std::string hostname;      // node name for the first interface, "<node>-<network>" else
  SourceLocation where;
};

// How dimctl reaches a node's baseboard management controller over IPMI
// (power, Serial-over-LAN console; docs/cluster-xml.md). Values are checked
// where they are read (CheckBmcValues): they become ipmitool arguments.
enum class BmcType { kLanplus, kLan };  // IPMI 2.0 RMCP+ (-I lanplus), IPMI 1.5 (-I lan)

struct Bmc {
  std::string network;             // "" when only address= places it
  Ipv4 address;
  // "explicit" (address=), "interface" (the node's interface on network),
  // "position" (network node-base + the node's position).
  std::string origin;
  BmcType type = BmcType::kLanplus;
  int port = 623;
  std::string user;                // "": the credentials entry's user, else anonymous
  std::string credentials = "default";  // entry of the BMC credentials file
  int cipher_suite = -1;           // ipmitool -C; -1: ipmitool chooses
  SourceLocation where;
};

struct Node {
  std::string name;
  Position position;
  std::string group;  // empty: none
  std::string image;
  std::string kernel_args;
  std::vector<std::string> keepout;
  std::string server;  // second-level (or top) server that serves its image
  bool server_by_rack = false;  // chosen by the rack rule rather than named
  std::vector<Interface> interfaces;  // [0] is the boot interface
  std::optional<Bmc> bmc;             // absent: no <bmc> applies to the node
  SourceLocation where;

  const Interface& boot() const { return interfaces.front(); }
};

struct Level {
  int first = 1;
  int count = 1;
};

struct Naming {
  std::string pattern;  // "r{rack:02}c{chassis}n{slot:02}"
  std::optional<Level> rack, chassis, slot;
  // Number of positions the taxonomy spans (product of the level counts).
  uint64_t Positions() const;
  // Index of a position: ((rack - first) * chassis.count + chassis - first) * slot.count + ...
  std::optional<uint64_t> Index(const Position& p) const;
};

struct Cluster {
  std::string name;
  std::string domain;
  std::string tftp_root = "/srv/tftp";
  std::string source;  // file it was loaded from, for messages
  std::vector<Network> networks;
  std::vector<Image> images;
  std::vector<Server> servers;
  Naming naming;
  std::vector<Group> groups;
  std::vector<Node> nodes;  // in document order

  const Network* FindNetwork(const std::string& name) const;
  const Server* FindServer(const std::string& name) const;
  const Image* FindImage(const std::string& name) const;
  const Group* FindGroup(const std::string& name) const;
  const Node* FindNode(const std::string& name) const;
  // Fully qualified name for an interface: hostname + network or site domain.
  std::string Fqdn(const Interface& itf) const;
};

}  // namespace dim::cluster
