// dimctl: the administrator's command line. Each noun is registered from its
// own cmd_<noun>.cc; this file only lists them.
#include "cli.h"

int main(int argc, char** argv) {
  dimctl::Cli cli;
  return cli.Main(argc, argv);
}
