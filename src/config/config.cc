// Config loading: a small INI reader of our own (so every error names its line), command-line
// overrides parsed by Boost.Program_options from the schema's description, and the typed getters.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/program_options/parsers.hpp>

#include "src/config/config.h"

namespace rf {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string unknown_key_message(const std::string& name) {
  std::string msg = "unknown key '" + name + "'";
  std::string hint = suggest_config_key(name);
  if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
  return msg;
}

// A value is cut at a ';' or '#' that starts it or follows whitespace, so "a;b" stays whole and
// "x = 3  ; note" reads 3. A value in double quotes is taken literally (for "; " or surrounding space).
bool split_value(const std::string& raw, std::string* value) {
  std::string v = trim(raw);
  if (!v.empty() && v.front() == '"') {
    size_t close = v.find('"', 1);
    if (close == std::string::npos) return false;
    std::string rest = trim(v.substr(close + 1));
    if (!rest.empty() && rest.front() != ';' && rest.front() != '#') return false;
    *value = v.substr(1, close - 1);
    return true;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if ((v[i] == ';' || v[i] == '#') && (i == 0 || v[i - 1] == ' ' || v[i - 1] == '\t')) {
      v = v.substr(0, i);
      break;
    }
  }
  *value = trim(v);
  return true;
}

// Values that the reader would otherwise trim or cut are written in quotes.
std::string quote_if_needed(const std::string& v) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  bool needs = !v.empty() && (space(v.front()) || space(v.back()) || v.front() == '"' ||
                              v.front() == ';' || v.front() == '#' ||
                              v.find(" ;") != std::string::npos || v.find(" #") != std::string::npos ||
                              v.find("\t;") != std::string::npos || v.find("\t#") != std::string::npos);
  return needs ? "\"" + v + "\"" : v;
}

}  // namespace

Config Config::defaults() {
  Config cfg;
  for (const ConfigKey& k : config_schema()) {
    Entry e;
    e.value = parse_config_value(k, k.default_value, std::string("schema default of ") + k.name);
    cfg.entries_[k.name] = std::move(e);
  }
  return cfg;
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  Config cfg = defaults();
  if (!path.empty()) cfg.apply_file(path);
  cfg.apply_overrides(overrides);
  return cfg;
}

void Config::apply_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ConfigError("config file '" + path + "' not found");
  if (std::filesystem::is_directory(path, ec)) {
    throw ConfigError("config file '" + path + "' is a directory");
  }
  std::ifstream in(path);
  if (!in) throw ConfigError("config file '" + path + "' cannot be read");
  path_ = path;

  std::map<std::string, int> seen;  // key -> line first set
  std::string section;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = path + ":" + std::to_string(lineno);
    std::string t = trim(line);
    if (t.empty() || t.front() == ';' || t.front() == '#') continue;
    if (t.front() == '[') {
      size_t close = t.find(']');
      std::string after = close == std::string::npos ? "" : trim(t.substr(close + 1));
      if (close == std::string::npos || (!after.empty() && after.front() != ';' && after.front() != '#')) {
        throw ConfigError(where + ": malformed section header '" + t + "', expected '[section]'");
      }
      section = trim(t.substr(1, close - 1));
      if (std::find(kConfigSections.begin(), kConfigSections.end(), section) == kConfigSections.end()) {
        std::string msg = where + ": unknown section [" + section + "]";
        std::string best = suggest_config_section(section);
        if (!best.empty()) msg += " (did you mean [" + best + "]?)";
        msg += "; sections are";
        for (const std::string& s : kConfigSections) msg += " [" + s + "]";
        throw ConfigError(msg);
      }
      continue;
    }
    size_t eq = t.find('=');
    if (eq == std::string::npos) {
      throw ConfigError(where + ": expected 'key = value', '[section]' or a comment, got '" + t + "'");
    }
    std::string key = trim(t.substr(0, eq));
    if (key.empty()) throw ConfigError(where + ": missing key before '=' in '" + t + "'");
    if (section.empty()) {
      throw ConfigError(where + ": key '" + key + "' is outside any [section]" +
                        (suggest_config_key(key).empty() ? std::string()
                                                         : " (did you mean '" + suggest_config_key(key) + "'?)"));
    }
    std::string name = section + "." + key;
    const ConfigKey* spec = find_config_key(name);
    if (!spec) throw ConfigError(where + ": " + unknown_key_message(name));
    auto [it, fresh] = seen.emplace(name, lineno);
    if (!fresh) {
      throw ConfigError(where + ": duplicate key '" + name + "' (first set at line " +
                        std::to_string(it->second) + ")");
    }
    std::string value;
    if (!split_value(t.substr(eq + 1), &value)) {
      throw ConfigError(where + ": [" + section + "] " + key + ": unterminated or malformed quoted value '" +
                        trim(t.substr(eq + 1)) + "'");
    }
    Entry& e = entries_[name];
    e.value = parse_config_value(*spec, value, where);
    e.source = where;
    e.set = true;
  }
}

Config Config::with_overrides(const std::vector<std::string>& overrides) const {
  Config copy = *this;
  copy.apply_overrides(overrides);
  return copy;
}

void Config::apply_overrides(const std::vector<std::string>& overrides) {
  namespace po = boost::program_options;
  if (overrides.empty()) return;
  po::options_description desc = config_options_description();
  po::parsed_options parsed(&desc);
  // Boost rejects "--key=" (nothing after '='), but an empty value is how a list or path is cleared,
  // so that form is passed on as "--key" "".
  std::vector<std::string> args;
  for (const std::string& a : overrides) {
    if (a.size() > 3 && a.compare(0, 2, "--") == 0 && a.back() == '=' && a.find('=') == a.size() - 1) {
      args.push_back(a.substr(0, a.size() - 1));
      args.push_back("");
    } else {
      args.push_back(a);
    }
  }
  try {
    // No guessing: "--train.batch" must not silently mean "--train.batch_size".
    parsed = po::command_line_parser(args)
                 .options(desc)
                 .style(po::command_line_style::unix_style & ~po::command_line_style::allow_guessing &
                        ~po::command_line_style::allow_short)
                 .allow_unregistered()
                 .run();
  } catch (const po::error& e) {
    throw ConfigError(std::string("command line: ") + e.what());
  }
  for (const po::option& opt : parsed.options) {
    std::string given;
    for (const std::string& tok : opt.original_tokens) given += (given.empty() ? "" : " ") + tok;
    if (opt.position_key >= 0) {
      throw ConfigError("command line: unexpected argument '" + given +
                        "' (config keys are given as --section.key=value)");
    }
    if (opt.unregistered) {
      throw ConfigError(given + ": " + unknown_key_message(opt.string_key));
    }
    const ConfigKey* spec = find_config_key(opt.string_key);
    RF_CHECK(spec != nullptr, "option ", opt.string_key, " is in the description but not the schema");
    // A bare "--section.flag" is true; implicit values are only filled in by po::store, not here.
    std::string value = opt.value.empty() && spec->spec.type == ConfigType::kBool ? "true" : "";
    if (!opt.value.empty()) value = opt.value.front();
    else if (spec->spec.type != ConfigType::kBool) {
      throw ConfigError(given + ": missing value for '" + opt.string_key + "'");
    }
    Entry& e = entries_[opt.string_key];
    e.value = parse_config_value(*spec, value, given);
    e.source = "command line";
    e.set = true;
  }
}

const Config::Entry& Config::entry(const std::string& key, ConfigType type, const char* getter) const {
  const ConfigKey* spec = find_config_key(key);
  if (!spec) throw Error(std::string("Config::") + getter + ": '" + key + "' is not in the config schema");
  if (spec->spec.type != type) {
    throw Error(std::string("Config::") + getter + ": '" + key + "' is " +
                describe_config_spec(spec->spec) + ", not that type");
  }
  auto it = entries_.find(key);
  RF_CHECK(it != entries_.end(), "config key ", key, " has no value");
  return it->second;
}

int64_t Config::get_int(const std::string& key) const {
  return std::get<int64_t>(entry(key, ConfigType::kInt, "get_int").value);
}
double Config::get_float(const std::string& key) const {
  return std::get<double>(entry(key, ConfigType::kFloat, "get_float").value);
}
bool Config::get_bool(const std::string& key) const {
  return std::get<bool>(entry(key, ConfigType::kBool, "get_bool").value);
}
const std::string& Config::get_string(const std::string& key) const {
  return std::get<std::string>(entry(key, ConfigType::kString, "get_string").value);
}
const std::vector<int64_t>& Config::get_int_list(const std::string& key) const {
  return std::get<std::vector<int64_t>>(entry(key, ConfigType::kIntList, "get_int_list").value);
}
const std::vector<std::string>& Config::get_string_list(const std::string& key) const {
  return std::get<std::vector<std::string>>(entry(key, ConfigType::kStringList, "get_string_list").value);
}

std::string Config::source(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) throw Error("Config::source: '" + key + "' is not in the config schema");
  return it->second.source;
}

bool Config::is_set(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) throw Error("Config::is_set: '" + key + "' is not in the config schema");
  return it->second.set;
}

std::string Config::dump() const {
  std::ostringstream os;
  os << "; effective recforge config" << (path_.empty() ? "" : " (file " + path_ + ")") << "\n";
  for (const std::string& section : kConfigSections) {
    os << "\n[" << section << "]\n";
    for (const ConfigKey& k : config_schema()) {
      std::string name = k.name;
      if (name.compare(0, section.size() + 1, section + ".") != 0) continue;
      const Entry& e = entries_.at(name);
      std::string line = name.substr(section.size() + 1) + " = " + quote_if_needed(format_config_value(k, e.value));
      if (line.size() < 40) line.resize(40, ' ');
      os << line << "  ; from " << e.source << "\n";
    }
  }
  return os.str();
}

}  // namespace rf
