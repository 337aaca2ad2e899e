#include "dim/cluster/model.h"

namespace dim::cluster {

std::string SourceLocation::ToString() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

uint64_t Naming::Positions() const {
  uint64_t n = 1;
  for (const auto* l : {&rack, &chassis, &slot}) {
    if (*l) n *= static_cast<uint64_t>((*l)->count);
  }
  return n;
}

std::optional<uint64_t> Naming::Index(const Position& p) const {
  // Mixed radix: rack is the most significant digit, slot the least, so the
  // nodes of one chassis get consecutive addresses.
  uint64_t index = 0;
  const std::pair<const std::optional<Level>*, const std::optional<int>*> digits[] = {
      {&rack, &p.rack}, {&chassis, &p.chassis}, {&slot, &p.slot}};
  for (const auto& [level, value] : digits) {
    if (!*level) {
      if (*value) return std::nullopt;
      continue;
    }
    if (!*value) return std::nullopt;
    int v = **value - (*level)->first;
    if (v < 0 || v >= (*level)->count) return std::nullopt;
    index = index * static_cast<uint64_t>((*level)->count) + static_cast<uint64_t>(v);
  }
  return index;
}

namespace {
template <typename T>
const T* FindByName(const std::vector<T>& items, const std::string& name) {
  for (const auto& i : items) {
    if (i.name == name) return &i;
  }
  return nullptr;
}
}  // namespace

const Network* Cluster::FindNetwork(const std::string& n) const { return FindByName(networks, n); }
const Server* Cluster::FindServer(const std::string& n) const { return FindByName(servers, n); }
const Image* Cluster::FindImage(const std::string& n) const { return FindByName(images, n); }
const Group* Cluster::FindGroup(const std::string& n) const { return FindByName(groups, n); }
const Node* Cluster::FindNode(const std::string& n) const { return FindByName(nodes, n); }

std::optional<Ipv6> Network::Ipv6For(Ipv4 ip) const {
  if (!ipv6_prefix || !subnet.Contains(ip)) return std::nullopt;
  return ipv6_prefix->network.Plus(ip.value - subnet.network.value);
}

std::string Cluster::Fqdn(const Interface& itf) const {
  const Network* net = FindNetwork(itf.network);
  const std::string& d = net && !net->domain.empty() ? net->domain : domain;
  return d.empty() ? itf.hostname : itf.hostname + "." + d;
}

}  // namespace dim::cluster
