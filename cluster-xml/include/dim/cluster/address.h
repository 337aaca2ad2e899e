// Value types for the addresses a cluster description talks about: IPv4 and
// IPv6 addresses and subnets, and Ethernet MACs. Parsing is strict (no leading zeros
// that could mean octal, no missing octets) because a typo here boots the wrong node.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dim::cluster {

struct Ipv4 {
  uint32_t value = 0;  // host byte order

  static std::optional<Ipv4> Parse(std::string_view text);
  std::string ToString() const;
  auto operator<=>(const Ipv4&) const = default;
};

struct Subnet {
  Ipv4 network;
  int prefix = 0;  // 0..32

  // "10.1.0.0/16"; rejects host bits set ("10.1.2.3/16") so intent is unambiguous.
  static std::optional<Subnet> Parse(std::string_view text);
  std::string ToString() const;
  Ipv4 Netmask() const;
  Ipv4 Broadcast() const;
  bool Contains(Ipv4 ip) const;
  // Usable host addresses: network+1 .. broadcast-1 (for /31 and /32 the whole block).
  Ipv4 FirstHost() const;
  Ipv4 LastHost() const;
  auto operator<=>(const Subnet&) const = default;
};

struct Ipv6 {
  std::array<uint8_t, 16> bytes{};  // network byte order

  // RFC 4291 text: eight groups of 1-4 hex digits, one "::"; no zone, no
  // embedded IPv4 (a cluster description never needs them).
  static std::optional<Ipv6> Parse(std::string_view text);
  std::string ToString() const;  // RFC 5952: lower case, longest zero run as "::"
  // This address plus `offset` (carries across bytes; wraps at 2^128).
  Ipv6 Plus(uint64_t offset) const;
  auto operator<=>(const Ipv6&) const = default;
};

struct Subnet6 {
  Ipv6 network;
  int prefix = 0;  // 0..128

  // "fd00:10::/64"; rejects host bits set, like Subnet.
  static std::optional<Subnet6> Parse(std::string_view text);
  std::string ToString() const;
  Ipv6 Last() const;  // the highest address of the prefix
  bool Contains(const Ipv6& ip) const;
  auto operator<=>(const Subnet6&) const = default;
};

struct Mac {
  std::array<uint8_t, 6> bytes{};

  // Accepts "52:54:00:ab:cd:ef" and "52-54-00-AB-CD-EF"; nothing else.
  static std::optional<Mac> Parse(std::string_view text);
  std::string ToString(char sep = ':') const;  // lower case
  bool IsMulticast() const { return bytes[0] & 1; }
  bool IsZero() const;
  auto operator<=>(const Mac&) const = default;
};

}  // namespace dim::cluster
