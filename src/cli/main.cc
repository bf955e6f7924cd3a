// `recforge <command> [--config FILE] [--section.key=value ...] [--print-config] [--help]`: picks the
// subcommand from the table in commands.cc, loads and validates the config, and turns any rf::Error
// into one line on stderr and its exit code (2 for bad input, 1 otherwise).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <mpi.h>

#include "src/cli/commands.h"
#include "parallel/failure.h"
#include "parallel/process_group.h"
#include "src/core/error.h"

namespace po = boost::program_options;

namespace rf::cli {
namespace {

void print_usage(std::ostream& os) {
  os << "usage: recforge <command> [--config FILE] [--section.key=value ...] [--print-config] [--help]\n\n"
        "Train recommender models on one CPU, one GPU or an MPI/NCCL cluster (run under mpirun or srun).\n\n"
        "commands:\n";
  for (const Command& c : commands()) {
    std::string name = c.name;
    name.resize(std::max<size_t>(name.size() + 2, 10), ' ');
    os << "  " << name << c.help << "\n";
  }
  os << "\n`recforge <command> --help` lists every config key with its type, range and default.\n";
}

po::options_description general_options() {
  po::options_description desc("options", 100, 50);
  desc.add_options()
      ("config,c", po::value<std::string>()->value_name("FILE"), "INI experiment file (e.g. configs/dlrm_tiny.ini)")
      ("print-config", "print the effective config (defaults < file < command line) and exit")
      ("out,o", po::value<std::string>()->value_name("DIR"), "output directory (preprocess; the same as --data.shard_dir=DIR)")
      ("help,h", "print this help and exit");
  return desc;
}

std::string command_names() {
  std::string names;
  for (const Command& c : commands()) names += (names.empty() ? "" : ", ") + std::string(c.name);
  return names;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return kExitBadInput;
  }
  const std::string first = argv[1];
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage(std::cout);
    return 0;
  }
  const Command* cmd = find_command(first.c_str());
  if (!cmd) {
    throw InputError("unknown command '" + first + "'; commands are: " + command_names() +
                     " (see `recforge --help`)");
  }

  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd->positional_key && !args.empty() && !args[0].empty() && args[0][0] != '-')
    args[0] = std::string("--") + cmd->positional_key + "=" + args[0];
  po::options_description general = general_options();
  po::variables_map vm;
  po::parsed_options parsed(&general);
  try {
    // Everything that is not a general option is a config override, checked by Config::load.
    parsed = po::command_line_parser(args)
                 .options(general)
                 .style(po::command_line_style::unix_style & ~po::command_line_style::allow_guessing)
                 .allow_unregistered()
                 .run();
    po::store(parsed, vm);
  } catch (const po::error& e) {
    throw ConfigError(std::string(cmd->name) + ": " + e.what());
  }
  std::vector<std::string> overrides = po::collect_unrecognized(parsed.options, po::include_positional);
  if (vm.count("out")) overrides.push_back("--data.shard_dir=" + vm["out"].as<std::string>());

  if (vm.count("help")) {
    std::cout << "usage: recforge " << cmd->name
              << (cmd->takes_config ? " [--config FILE] [--section.key=value ...] [--print-config]" : "")
              << " [--help]\n\n"
              << cmd->help << "\n\n"
              << general << "\n";
    if (cmd->takes_config) std::cout << config_options_description() << "\n";
    return 0;
  }
  std::string path = vm.count("config") ? vm["config"].as<std::string>() : "";
  if (!cmd->takes_config && (!path.empty() || !overrides.empty())) {
    throw ConfigError(std::string("recforge ") + cmd->name + " takes no config or overrides");
  }
  Config cfg = Config::load(path, overrides);
  if (vm.count("print-config")) {
    std::cout << cfg.dump();
    return 0;
  }
  return cmd->handler(cfg);
}

}  // namespace
}  // namespace rf::cli

namespace {
// True inside an mpirun/srun job of several ranks (MPI is initialised lazily by the commands that
// need it, so --help and bad configs never start it).
bool in_multi_rank_job() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return false;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size > 1;
}
}  // namespace

int main(int argc, char** argv) {
  rf::install_failure_handlers();
  try {
    int rc = rf::cli::run(argc, argv);
    rf::ProcessGroup::finalize();
    return rc;
  } catch (const rf::Error& e) {
    // One failing rank must end the whole job at once, not leave the others inside a collective.
    if (in_multi_rank_job()) rf::abort_job(e);
    std::fprintf(stderr, "recforge: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    if (in_multi_rank_job()) rf::abort_job(e);
    std::fprintf(stderr, "recforge: internal error: %s\n", e.what());
    return rf::kExitFailure;
  }
}
