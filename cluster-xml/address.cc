#include "dim/cluster/address.h"

#include <cstdio>

namespace dim::cluster {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A decimal number 0..max without sign or leading zeros ("010" is rejected:
// inet_aton would read it as octal, and people never mean that).
std::optional<uint32_t> ParseDecimal(std::string_view s, uint32_t max) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return std::nullopt;
  return static_cast<uint32_t>(v);
}

}  // namespace

std::optional<Ipv4> Ipv4::Parse(std::string_view text) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = text.find('.');
    if ((i < 3) != (dot != std::string_view::npos)) return std::nullopt;
    auto octet = ParseDecimal(text.substr(0, dot), 255);
    if (!octet) return std::nullopt;
    value = (value << 8) | *octet;
    text = i < 3 ? text.substr(dot + 1) : std::string_view();
  }
  return Ipv4{value};
}

std::string Ipv4::ToString() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", value >> 24, (value >> 16) & 255,
                (value >> 8) & 255, value & 255);
  return buf;
}

std::optional<Subnet> Subnet::Parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = Ipv4::Parse(text.substr(0, slash));
  auto prefix = ParseDecimal(text.substr(slash + 1), 32);
  if (!ip || !prefix) return std::nullopt;
  Subnet s{*ip, static_cast<int>(*prefix)};
  if ((ip->value & s.Netmask().value) != ip->value) return std::nullopt;
  return s;
}

std::string Subnet::ToString() const { return network.ToString() + "/" + std::to_string(prefix); }

Ipv4 Subnet::Netmask() const {
  return Ipv4{prefix == 0 ? 0u : ~uint32_t{0} << (32 - prefix)};
}

Ipv4 Subnet::Broadcast() const { return Ipv4{network.value | ~Netmask().value}; }

bool Subnet::Contains(Ipv4 ip) const {
  return (ip.value & Netmask().value) == network.value;
}

Ipv4 Subnet::FirstHost() const { return prefix >= 31 ? network : Ipv4{network.value + 1}; }

Ipv4 Subnet::LastHost() const {
  return prefix >= 31 ? Broadcast() : Ipv4{Broadcast().value - 1};
}

std::optional<Ipv6> Ipv6::Parse(std::string_view text) {
  if (text.size() < 2 || text.size() > 39) return std::nullopt;
  std::array<uint16_t, 8> groups{};
  int count = 0;
  int gap = -1;  // index in `groups` where "::" stands
  size_t i = 0;
  if (text.starts_with("::")) {
    gap = 0;
    i = 2;
  }
  while (i < text.size()) {
    size_t start = i;
    uint32_t v = 0;
    while (i < text.size() && i - start < 5 && HexDigit(text[i]) >= 0) v = v * 16 + HexDigit(text[i++]);
    if (i == start || i - start > 4 || count == 8) return std::nullopt;
    groups[count++] = static_cast<uint16_t>(v);
    if (i == text.size()) break;
    if (text[i] != ':') return std::nullopt;
    ++i;
    if (i < text.size() && text[i] == ':') {
      if (gap >= 0) return std::nullopt;
      gap = count;
      ++i;
    } else if (i == text.size()) {
      return std::nullopt;  // a single trailing ':'
    }
  }
  if (gap < 0 && count != 8) return std::nullopt;
  if (gap >= 0 && count > 7) return std::nullopt;
  Ipv6 ip;
  int zeros = 8 - count;
  for (int g = 0, k = 0; g < 8; ++g) {
    uint16_t v = 0;
    if (gap >= 0 && g >= gap && g < gap + zeros) {
      v = 0;
    } else {
      v = groups[k++];
    }
    ip.bytes[2 * g] = static_cast<uint8_t>(v >> 8);
    ip.bytes[2 * g + 1] = static_cast<uint8_t>(v & 0xff);
  }
  return ip;
}

std::string Ipv6::ToString() const {
  uint16_t g[8];
  for (int k = 0; k < 8; ++k) g[k] = static_cast<uint16_t>(bytes[2 * k] << 8 | bytes[2 * k + 1]);
  // The longest run of two or more zero groups becomes "::" (the first, on a tie).
  int best = -1, best_len = 1;
  for (int k = 0; k < 8;) {
    if (g[k] != 0) {
      ++k;
      continue;
    }
    int j = k;
    while (j < 8 && g[j] == 0) ++j;
    if (j - k > best_len) {
      best = k;
      best_len = j - k;
    }
    k = j;
  }
  std::string out;
  char buf[8];
  for (int k = 0; k < 8; ++k) {
    if (k == best) {
      out += "::";
      k += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(buf, sizeof buf, "%x", g[k]);
    out += buf;
  }
  return out;
}

Ipv6 Ipv6::Plus(uint64_t offset) const {
  Ipv6 out = *this;
  unsigned carry = 0;
  for (int k = 15; k >= 0; --k) {
    unsigned sum = out.bytes[k] + static_cast<unsigned>(offset & 0xff) + carry;
    out.bytes[k] = static_cast<uint8_t>(sum & 0xff);
    carry = sum >> 8;
    offset >>= 8;
  }
  return out;
}

std::optional<Subnet6> Subnet6::Parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = Ipv6::Parse(text.substr(0, slash));
  auto prefix = ParseDecimal(text.substr(slash + 1), 128);
  if (!ip || !prefix) return std::nullopt;
  Subnet6 s{*ip, static_cast<int>(*prefix)};
  // No host bits: the address is the first of its prefix.
  for (int b = s.prefix; b < 128; ++b) {
    if (ip->bytes[b / 8] & (0x80 >> (b % 8))) return std::nullopt;
  }
  return s;
}

std::string Subnet6::ToString() const { return network.ToString() + "/" + std::to_string(prefix); }

Ipv6 Subnet6::Last() const {
  Ipv6 out = network;
  for (int b = prefix; b < 128; ++b) out.bytes[b / 8] |= static_cast<uint8_t>(0x80 >> (b % 8));
  return out;
}

bool Subnet6::Contains(const Ipv6& ip) const {
  for (int b = 0; b < prefix; ++b) {
    uint8_t mask = static_cast<uint8_t>(0x80 >> (b % 8));
    if ((ip.bytes[b / 8] & mask) != (network.bytes[b / 8] & mask)) return false;
  }
  return true;
}

std::optional<Mac> Mac::Parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  char sep = text[2];
  if (sep != ':' && sep != '-') return std::nullopt;
  Mac mac;
  for (int i = 0; i < 6; ++i) {
    int hi = HexDigit(text[i * 3]);
    int lo = HexDigit(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != sep) return std::nullopt;
    mac.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return mac;
}

std::string Mac::ToString(char sep) const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x%c%02x%c%02x%c%02x%c%02x%c%02x", bytes[0], sep, bytes[1],
                sep, bytes[2], sep, bytes[3], sep, bytes[4], sep, bytes[5]);
  return buf;
}

bool Mac::IsZero() const {
  for (uint8_t b : bytes) {
    if (b) return false;
  }
  return true;
}

}  // namespace dim::cluster
