// Shared helpers for the cluster-xml unit tests: a small valid cluster that
// tests mutate, and diagnostic lookups.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "dim/cluster/load.h"

namespace dim::cluster::testing {

// Eight slots in one rack, two chassis; one network with a dynamic range.
inline std::string SmallXml(const std::string& nodes, const std::string& extra_groups = "") {
  return R"(<site name="t" domain="t.example" image="img">
  <networks>
    <network name="boot" subnet="10.0.0.0/24" gateway="10.0.0.1" node-base="10.0.0.100">
      <dynamic-range start="10.0.0.200" end="10.0.0.250"/>
    </network>
  </networks>
  <images><image name="img"/><image name="other"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.0.0.10"/>
    <server name="ss1" network="boot" address="10.0.0.11" racks="1"/>
  </servers>
  <naming pattern="r{rack:02}c{chassis}n{slot:02}">
    <level name="rack" first="1" count="1"/>
    <level name="chassis" first="1" count="2"/>
    <level name="slot" first="1" count="4"/>
  </naming>
  <groups>)" + extra_groups +
         R"(</groups>
  <nodes>
)" + nodes + R"(  </nodes>
</site>
)";
}

inline std::string NodeXml(int chassis, int slot, const std::string& attrs = "",
                           const std::string& itf_attrs = "") {
  char mac[32];
  std::snprintf(mac, sizeof mac, "52:54:00:00:%02x:%02x", chassis, slot);
  return "    <node rack=\"1\" chassis=\"" + std::to_string(chassis) + "\" slot=\"" +
         std::to_string(slot) + "\"" + attrs + "><interface network=\"boot\" mac=\"" + mac +
         "\"" + itf_attrs + "/></node>\n";
}

// The diagnostics as "line:col: problem" strings, for readable failures.
inline std::vector<std::string> Lines(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& d : r.diagnostics) out.push_back(d.ToString());
  return out;
}

}  // namespace dim::cluster::testing
