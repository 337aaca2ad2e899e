// Generators: the configuration files DHCP, DNS and network boot need, derived
// from a resolved Cluster. Output is a pure function of the cluster (no dates,
// no hash-map order), so the same XML always gives byte-identical files.
#pragma once

#include <string>
#include <vector>

#include "dim/cluster/model.h"
#include "dim/status.h"

namespace dim::cluster {

enum class Format { kDnsmasq, kIsc, kKea, kHosts, kEthers, kIpxe, kPxelinux };

Result<Format> ParseFormat(const std::string& name);  // "dnsmasq", "isc", ...
const char* FormatName(Format f);
// iPXE scripts and pxelinux configs are one file per node.
bool IsPerNode(Format f);

struct GeneratedFile {
  std::string name;  // relative: "" for whole-cluster formats, else per node
  std::string content;
};

// Whole-cluster formats give one file with an empty name; per-node formats
// give one file per node: "<host>.ipxe" or "01-<mac-with-dashes>".
std::vector<GeneratedFile> Generate(const Cluster& cluster, Format format);

std::string GenerateDnsmasq(const Cluster& cluster);
std::string GenerateIscDhcpd(const Cluster& cluster);
std::string GenerateKea(const Cluster& cluster);
std::string GenerateHosts(const Cluster& cluster);
std::string GenerateEthers(const Cluster& cluster);
std::string GenerateIpxeScript(const Cluster& cluster, const Node& node);
std::string GeneratePxelinux(const Cluster& cluster, const Node& node);

// URL of the per-node iPXE script on the node's image server; the DHCP
// generators hand it to iPXE clients.
std::string IpxeScriptUrl(const Cluster& cluster, const Node& node);

// Writes content to path so that readers see the old file or the new one,
// never a mix: temp file in the same directory, fsync, rename, fsync dir.
Status WriteFileAtomically(const std::string& path, const std::string& content);

// The same for many files in one directory (per-node formats): each file is
// replaced atomically, with one filesystem sync for the batch.
Status WriteFilesAtomically(const std::string& dir, const std::vector<GeneratedFile>& files);

}  // namespace dim::cluster
