#include "dim/cluster/wol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace dim::cluster {

MagicPacket BuildMagicPacket(const Mac& mac) {
  MagicPacket p;
  std::memset(p.data(), 0xFF, 6);
  for (int i = 0; i < 16; ++i) std::memcpy(p.data() + 6 + i * 6, mac.bytes.data(), 6);
  return p;
}

Result<std::unique_ptr<UdpBroadcastSender>> UdpBroadcastSender::Open(const std::string& device) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return PosixError("socket(AF_INET, SOCK_DGRAM)");
  int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0) {
    return PosixError("setsockopt SO_BROADCAST");
  }
  if (!device.empty() && ::setsockopt(fd.get(), SOL_SOCKET, SO_BINDTODEVICE, device.c_str(),
                                      static_cast<socklen_t>(device.size())) != 0) {
    return PosixError("bind to device " + device + " (needs CAP_NET_RAW)");
  }
  return std::unique_ptr<UdpBroadcastSender>(new UdpBroadcastSender(std::move(fd)));
}

Status UdpBroadcastSender::SendBroadcast(Ipv4 destination, uint16_t port,
                                         const std::vector<uint8_t>& payload) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(destination.value);
  ssize_t n = ::sendto(fd_.get(), payload.data(), payload.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to), sizeof to);
  if (n < 0) return PosixError("send to " + destination.ToString() + ":" + std::to_string(port));
  if (static_cast<size_t>(n) != payload.size()) {
    return Status::IOError("short send to " + destination.ToString());
  }
  return Status::Ok();
}

Status WakeNode(const Cluster& cluster, const Node& node, DatagramSender& sender) {
  if (node.interfaces.empty()) {
    return Status::InvalidArgument("node " + node.name + " has no interface to wake");
  }
  const Interface& itf = node.boot();
  const Network* net = cluster.FindNetwork(itf.network);
  if (!net) return Status::NotFound("node " + node.name + ": unknown network " + itf.network);
  MagicPacket p = BuildMagicPacket(itf.mac);
  Status s = sender.SendBroadcast(net->subnet.Broadcast(), kWakeOnLanPort,
                                  std::vector<uint8_t>(p.begin(), p.end()));
  return s.Annotate("waking " + node.name + " (" + itf.mac.ToString() + ")");
}

}  // namespace dim::cluster
