// Nodes' baseboard management controllers in the cluster description: the
// rules for the values that become ipmitool arguments (checked where the
// loader reads them, and again on a registry that never went through it),
// and their one-line text for diffs and listings.
#pragma once

#include <string>
#include <string_view>

#include "dim/cluster/model.h"
#include "dim/status.h"

namespace dim::cluster {

// An IPMI user name: 1-16 letters, digits, '.', '_', '-', '@', not starting
// with '-' (ipmitool -U; IPMI user names have at most 16 bytes).
bool IsBmcUser(std::string_view v);
inline constexpr const char* kBmcUserRule =
    "write 1-16 letters, digits, '.', '_', '-' or '@', not starting with '-' (an IPMI user name)";

// The name of an entry of the BMC credentials file: 1-64 letters, digits,
// '.', '_', '-', starting with a letter or digit.
bool IsBmcCredentialsName(std::string_view v);
inline constexpr const char* kBmcCredentialsRule =
    "write 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit: the name of a "
    "[section] of the BMC credentials file";

const char* BmcTypeName(BmcType t);  // "lanplus", "lan"

// "lanplus 10.2.1.5:623 user admin credentials default cipher-suite 3 (interface bmc)":
// what `node show` prints and the registry diff compares.
std::string BmcText(const Bmc& bmc);

// Every node's BMC values (user, credentials name, network name, port,
// cipher suite), for a cluster that did not come from the loader: a
// registry, possibly copied from a parent server. InvalidArgument names the
// node and the field.
Status CheckBmcValues(const Cluster& cluster);

}  // namespace dim::cluster
