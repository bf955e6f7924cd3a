// Experiment configuration: one schema table (schema.cc) names every key with its type, default,
// range and help; an INI file and `--section.key=value` overrides are checked against it, so a typo or
// a bad value stops the run with file:line before any work starts. Precedence: defaults < file < CLI.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <boost/program_options/options_description.hpp>

#include "src/core/error.h"

namespace rf {

enum class ConfigType { kInt, kFloat, kBool, kString, kIntList, kStringList };

// What a key accepts. Built with the helpers below so that each schema row stays one line.
struct ConfigSpec {
  ConfigType type = ConfigType::kString;
  double lo = -std::numeric_limits<double>::infinity();  // numeric bounds; for lists, per element
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;  // lo itself is excluded ("> 0" rather than ">= 0")
  bool hi_open = false;
  const char* choices = "";  // "sgd|adagrad" for enumerated strings; "" accepts any string
  int min_items = 0;         // lists only
};

// Helpers for schema rows. Bounds are inclusive unless the name says otherwise.
ConfigSpec int_key(double lo = -std::numeric_limits<double>::infinity(),
                   double hi = std::numeric_limits<double>::infinity());
ConfigSpec float_key(double lo = -std::numeric_limits<double>::infinity(),
                     double hi = std::numeric_limits<double>::infinity());
ConfigSpec positive_float_key();                     // > 0
ConfigSpec float_key_below(double lo, double hi);    // lo <= x < hi
ConfigSpec bool_key();
ConfigSpec string_key();
ConfigSpec choice_key(const char* choices);          // "a|b|c"
ConfigSpec int_list_key(double lo = -std::numeric_limits<double>::infinity(), int min_items = 0);
ConfigSpec string_list_key(int min_items = 0);

struct ConfigKey {
  const char* name;           // "section.key"
  ConfigSpec spec;
  const char* default_value;  // text, parsed by the same converter as file and CLI values
  const char* help;           // one line
};

// The schema, in the order it is documented and dumped. Sections appear in kConfigSections order.
const std::vector<ConfigKey>& config_schema();
extern const std::vector<std::string> kConfigSections;
const ConfigKey* find_config_key(const std::string& name);  // nullptr when unknown

// One options_description per section (caption "[train]", options "--train.batch_size") grouped into
// one, for `--help` and for parsing overrides. Values are taken as text and checked by the schema.
boost::program_options::options_description config_options_description();

using ConfigValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>,
                                 std::vector<std::string>>;

// Converts `text` for `key`; on failure throws ConfigError "<where>: [section] key: expected ..., got
// '<text>'". `where` is "file.ini:12" or "--train.lr=x" and may be empty.
ConfigValue parse_config_value(const ConfigKey& key, const std::string& text, const std::string& where);
std::string format_config_value(const ConfigKey& key, const ConfigValue& value);  // INI text
std::string describe_config_spec(const ConfigSpec& spec);  // "an integer >= 1", "one of a|b"

// Closest schema key to `name` by edit distance, or "" if none is close enough to be a likely typo.
std::string suggest_config_key(const std::string& name);
std::string suggest_config_section(const std::string& name);

class Config {
 public:
  // Reads `path` (skipped when empty) over the defaults, then applies `overrides`, each of the form
  // "--section.key=value" (or "--section.key" "value"; a bare "--bool.key" means true). A key given
  // twice on the command line takes the last value. Throws ConfigError for any bad input.
  static Config load(const std::string& path, const std::vector<std::string>& overrides);
  static Config defaults();
  // A copy with `--section.key=value` overrides applied on top (validated like the command line's).
  Config with_overrides(const std::vector<std::string>& overrides) const;

  // Typed access. Asking for a key that is not in the schema, or with the wrong type, is a
  // programming error and throws rf::Error (not ConfigError).
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<int64_t>& get_int_list(const std::string& key) const;
  const std::vector<std::string>& get_string_list(const std::string& key) const;

  std::string source(const std::string& key) const;  // "default", "<file>:<line>" or "command line"
  bool is_set(const std::string& key) const;         // given in the file or on the command line
  const std::string& path() const { return path_; }

  // The effective config in INI form, by section, each key followed by "; from <source>". Loading it
  // back gives the same values.
  std::string dump() const;

 private:
  struct Entry {
    ConfigValue value;
    std::string source = "default";
    bool set = false;
  };
  const Entry& entry(const std::string& key, ConfigType type, const char* getter) const;
  void apply_file(const std::string& path);
  void apply_overrides(const std::vector<std::string>& overrides);

  std::string path_;
  std::map<std::string, Entry> entries_;
};

}  // namespace rf
