// Wake-on-LAN: the magic packet (6 x 0xFF, then the MAC 16 times) sent as a
// UDP broadcast to port 9 on the node's network. Sending goes through a small
// interface so tests capture the datagrams instead of touching the network.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dim/cluster/model.h"
#include "dim/fd.h"
#include "dim/status.h"

namespace dim::cluster {

constexpr uint16_t kWakeOnLanPort = 9;
using MagicPacket = std::array<uint8_t, 102>;

MagicPacket BuildMagicPacket(const Mac& mac);

class DatagramSender {
 public:
  virtual ~DatagramSender() = default;
  virtual Status SendBroadcast(Ipv4 destination, uint16_t port,
                               const std::vector<uint8_t>& payload) = 0;
};

// The real thing: one UDP socket with SO_BROADCAST, optionally bound to a
// device (SO_BINDTODEVICE) when the route alone does not pick the right link.
class UdpBroadcastSender : public DatagramSender {
 public:
  static Result<std::unique_ptr<UdpBroadcastSender>> Open(const std::string& device = "");
  Status SendBroadcast(Ipv4 destination, uint16_t port,
                       const std::vector<uint8_t>& payload) override;

 private:
  explicit UdpBroadcastSender(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;  // move-only, so the sender is too
};

// Wakes one node through its boot interface: the packet goes to the broadcast
// address of that interface's network.
Status WakeNode(const Cluster& cluster, const Node& node, DatagramSender& sender);

}  // namespace dim::cluster
