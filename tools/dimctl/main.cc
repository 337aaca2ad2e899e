// dimctl: the administrator's command line. Each noun is registered from its
// own cmd_<noun>.cc; this file only lists them.
#include "cli.h"

int main(int argc, char** argv) {
  dimctl::Cli cli;
  dimctl::Noun image = dimctl::ImageCommands();
  dimctl::AddRollbackVerb(image);
  cli.Add(std::move(image));
  cli.Add(dimctl::KeepoutCommands());
  cli.Add(dimctl::PolicyCommands());
  cli.Add(dimctl::StoreCommands());
  cli.Add(dimctl::KeyCommands());
  cli.Add(dimctl::CaCommands());
  cli.Add(dimctl::PushCommands());
  cli.Add(dimctl::StatusCommands());
  cli.Add(dimctl::ClusterCommands());
  dimctl::Noun node = dimctl::NodeCommands();
  dimctl::AddNodeOverlayVerbs(node);
  dimctl::AddNodePowerVerbs(node);
  cli.Add(std::move(node));
  cli.Add(dimctl::InitrdCommands());
  cli.Add(dimctl::BootCommands());
  cli.Add(dimctl::CloneCommands());
  return cli.Main(argc, argv);
}
