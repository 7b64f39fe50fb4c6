// Commands on the local image store.
#include <fcntl.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "app.hpp"
#include "command_line.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/io.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/exporter/attestation.hpp"
#include "kiln/exporter/exporter.hpp"
#include "kiln/frontend/duration.hpp"
#include "kiln/oci/gc.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/image_source.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/referrers.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/userns.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace kiln::cli {
namespace {

oci::Store open_store() {
  return oci::Store(oci::Store::default_root());
}

oci::TaggedImage find_image(oci::Store& store, const std::string& ref) {
  auto found = store.find(ref);
  if (!found)
    throw Error("image " + quote(ref) + " is not in the store " + store.root().string());
  return *found;
}

struct ImageSummary {
  std::string id;  // config digest (for an index: the index digest)
  std::string created;
  int64_t size = 0;
};

ImageSummary summarize(oci::Store& store, const oci::Descriptor& d) {
  ImageSummary s;
  if (!oci::media_type::is_manifest(d.media_type)) {
    s.id = d.digest.str();
    return s;
  }
  oci::Manifest m = oci::parse_manifest(store.read_blob(d.digest));
  s.id = m.config.digest.str();
  s.created = oci::parse_image_config(store.read_blob(m.config.digest)).created;
  s.size = m.config.size;
  for (const oci::Descriptor& layer : m.layers)
    s.size += layer.size;
  return s;
}

std::string human_size(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.3g %s", value, units[unit]);
  return buf;
}

// "1 blob", "2 blobs".
std::string count_of(size_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// A size: bytes, or a number (a fraction allowed) with k, M, G, T, P (powers of 1000) or Ki, Mi,
// Gi, Ti, Pi (powers of 1024), case-insensitive, "B" optional: 4096, 512MB, 10g, 1.5GiB.
std::optional<uint64_t> parse_size(std::string_view text) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text.front())))
    return std::nullopt;
  double value = 0;
  const char* last = text.data() + text.size();
  auto [end, ec] = std::from_chars(text.data(), last, value, std::chars_format::fixed);
  if (ec != std::errc())
    return std::nullopt;
  std::string unit = to_lower(std::string_view(end, static_cast<size_t>(last - end)));
  if (ends_with(unit, "b"))
    unit.pop_back();
  double base = 1000;
  if (unit.size() == 2 && unit[1] == 'i') {
    unit.pop_back();
    base = 1024;
  }
  double bytes = value;
  if (!unit.empty()) {
    size_t power = std::string_view("kmgtp").find(unit);
    if (unit.size() != 1 || power == std::string_view::npos)
      return std::nullopt;
    for (size_t i = 0; i <= power; ++i)
      bytes *= base;
  }
  if (bytes >= 1.8e19)  // does not fit in 64 bits
    return std::nullopt;
  return static_cast<uint64_t>(bytes + 0.5);
}

// Seconds since 1970 of an RFC 3339 time ("2024-05-01T12:00:00Z", "…T12:00:00.5+02:00");
// nullopt when it is not one.
std::optional<int64_t> parse_rfc3339(const std::string& text) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t seconds = ::timegm(&tm);
  std::string_view rest = std::string_view(text).substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    size_t digits = rest.find_first_not_of("0123456789", 1);
    rest = rest.substr(digits == std::string_view::npos ? rest.size() : digits);
  }
  if (rest == "Z" || rest == "z")
    return seconds;
  int hours = 0, minutes = 0;
  char sign = 0;
  if (std::sscanf(std::string(rest).c_str(), "%c%2d:%2d", &sign, &hours, &minutes) == 3 &&
      (sign == '+' || sign == '-'))
    return seconds - (sign == '+' ? 1 : -1) * (hours * 3600 + minutes * 60);
  return std::nullopt;
}

// "3 hours ago", as podman and docker print CREATED.
std::string time_ago(const std::string& rfc3339) {
  std::optional<int64_t> when = parse_rfc3339(rfc3339);
  if (!when)
    return rfc3339.empty() ? "unknown" : rfc3339;
  int64_t age = static_cast<int64_t>(std::time(nullptr)) - *when;
  if (age < 0)
    return "in the future";
  struct Unit {
    int64_t seconds;
    const char* name;
  };
  static const Unit units[] = {{31536000, "year"}, {2592000, "month"}, {604800, "week"},
                               {86400, "day"},     {3600, "hour"},     {60, "minute"}};
  for (const Unit& u : units) {
    if (age >= u.seconds) {
      int64_t n = age / u.seconds;
      return std::to_string(n) + " " + u.name + (n == 1 ? "" : "s") + " ago";
    }
  }
  return age < 2 ? "Less than a second ago" : std::to_string(age) + " seconds ago";
}

}  // namespace

int history_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "history", "kiln history [--no-trunc] [--format table|json] [--quiet] IMAGE",
      "Show the steps an image was made of, newest first: when, the instruction, and the size "
      "of the layer it added (as stored, compressed).",
      1, 1};
  po::options_description flags("Options");
  flags.add_options()("no-trunc", po::bool_switch(), "do not shorten the instructions")(
      "format", po::value<std::string>()->default_value("table"), "table or json")(
      "quiet,q", po::bool_switch(), "print the image ID of each entry that has one only");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  std::string format = vm["format"].as<std::string>();
  if (format != "table" && format != "json")
    throw UsageError("--format must be table or json", spec.usage);
  oci::Store store = open_store();
  oci::TaggedImage image = find_image(store, operands[0]);
  oci::Descriptor manifest_desc = image.descriptor;
  if (oci::media_type::is_index(manifest_desc.media_type)) {
    std::optional<oci::Descriptor> d = oci::find_platform_manifest(
        oci::parse_index(store.read_blob(manifest_desc.digest)), oci::host_platform());
    if (!d)
      throw Error(quote(operands[0]) + " has no image for " + oci::host_platform().to_string());
    manifest_desc = *d;
  }
  oci::Manifest manifest = oci::parse_manifest(store.read_blob(manifest_desc.digest));
  oci::ImageConfig config = oci::parse_image_config(store.read_blob(manifest.config.digest));
  struct Row {
    std::string id, created, created_by, comment;
    int64_t size = 0;
  };
  std::vector<Row> rows;
  size_t layer = 0;
  for (const oci::HistoryEntry& h : config.history) {
    Row row;
    row.created = h.created;
    row.created_by = h.created_by;
    row.comment = h.comment;
    if (!h.empty_layer && layer < manifest.layers.size())
      row.size = manifest.layers[layer++].size;
    row.id = "<missing>";
    rows.push_back(row);
  }
  if (!rows.empty())
    rows.back().id = manifest.config.digest.str();  // the newest entry is the image
  std::reverse(rows.begin(), rows.end());
  bool no_trunc = vm["no-trunc"].as<bool>();
  if (format == "json") {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const Row& r : rows) {
      out.push_back({{"id", r.id},
                     {"created", r.created},
                     {"createdBy", r.created_by},
                     {"size", r.size},
                     {"comment", r.comment}});
    }
    io.out << out.dump(2) << "\n";
    return kExitOk;
  }
  if (vm["quiet"].as<bool>()) {
    for (const Row& r : rows)
      io.out << (no_trunc || r.id == "<missing>" ? r.id : r.id.substr(7, 12)) << "\n";
    return kExitOk;
  }
  char line[512];
  std::snprintf(line, sizeof line, "%-14s %-22s %-46s %-10s %s\n", "ID", "CREATED", "CREATED BY",
                "SIZE", "COMMENT");
  io.out << line;
  for (const Row& r : rows) {
    std::string by = r.created_by;
    if (!no_trunc && by.size() > 45)
      by = by.substr(0, 42) + "...";
    std::string id = no_trunc || r.id == "<missing>" ? r.id : r.id.substr(7, 12);
    io.out << id << std::string(id.size() < 15 ? 15 - id.size() : 1, ' ');
    std::snprintf(line, sizeof line, "%-22s %-46s %-10s %s\n", time_ago(r.created).c_str(),
                  by.c_str(), human_size(r.size).c_str(), r.comment.c_str());
    io.out << line;
  }
  return kExitOk;
}

int load_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "load", "kiln load [-i FILE] [-q]",
      "Load the images of a docker-archive or an oci-archive (or an OCI layout directory) into "
      "the store, with the names they carry. Without -i, the archive is read from standard "
      "input.",
      0, 0};
  po::options_description flags("Options");
  flags.add_options()("input,i", po::value<std::string>(), "the archive (default: standard input)")(
      "quiet,q", po::bool_switch(), "print nothing but errors");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  std::optional<TempDir> spool;
  fs::path archive;
  if (vm.count("input")) {
    archive = vm["input"].as<std::string>();
  } else {
    if (::isatty(STDIN_FILENO))
      throw UsageError("give the archive with -i FILE, or on standard input", spec.usage);
    spool.emplace(fs::path(), "kiln-load-");
    archive = spool->path() / "archive.tar";
    UniqueFd out(::open(archive.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out)
      throw Error("cannot spool standard input to " + archive.string());
    read_chunks(STDIN_FILENO, "standard input", [&](const char* data, size_t size) {
      write_all(out.get(), data, size, archive.string());
    });
  }
  oci::Store store = open_store();
  std::vector<oci::LoadedImage> images = oci::load_images(store, archive);
  bool quiet = vm["quiet"].as<bool>();
  for (const oci::LoadedImage& image : images) {
    for (const std::string& name : image.names) {
      store.tag(image.descriptor, name);
      if (!quiet)
        io.out << "Loaded image: " << oci::Store::canonical_name(name) << "\n";
    }
    if (image.names.empty() && !quiet)
      io.out << "Loaded image: " << image.descriptor.digest.str() << " (no name: kiln tag it)\n";
  }
  return kExitOk;
}

namespace {

// One row of `kiln images`, with what filters and templates read.
struct ImageRow {
  oci::TaggedImage image;
  ImageSummary summary;
  std::string repository, tag;
  std::map<std::string, std::string> labels;
};

// A Go template as podman's --format takes it, the subset that lists use: {{.Field}} (spaces
// allowed inside the braces), "\t" and "\n" escapes; unknown fields are an error.
std::string render_template(const std::string& tmpl,
                            const std::map<std::string, std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl.compare(i, 2, "{{") == 0) {
      size_t end = tmpl.find("}}", i);
      if (end == std::string::npos)
        throw UsageError("--format: {{ without }}", "kiln images --format TEMPLATE");
      std::string field(trim(std::string_view(tmpl).substr(i + 2, end - i - 2)));
      if (!field.starts_with("."))
        throw UsageError("--format: expected {{.Field}}, not {{" + field + "}}",
                         "kiln images --format TEMPLATE");
      auto it = fields.find(field.substr(1));
      if (it == fields.end()) {
        std::vector<std::string> names;
        for (const auto& [name, value] : fields)
          names.push_back(name);
        throw UsageError("--format: no field " + field + " (fields: " + join(names, ", ") + ")",
                         "kiln images --format TEMPLATE");
      }
      out += it->second;
      i = end + 2;
    } else if (tmpl.compare(i, 2, "\\t") == 0) {
      out += '\t';
      i += 2;
    } else if (tmpl.compare(i, 2, "\\n") == 0) {
      out += '\n';
      i += 2;
    } else {
      out += tmpl[i++];
    }
  }
  return out;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  // '*' any run (also across '/'), '?' one character.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
}

}  // namespace

int images_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "images",
      "kiln images [--filter K=V]... [--format table|json|TEMPLATE] [--digests] [--no-trunc] "
      "[--quiet] [NAME]",
      "List images in the local store, or those of repository NAME (NAME:TAG for one). Filters: "
      "reference=PATTERN (* and ?), label=KEY or KEY=VALUE, before=IMAGE, since=IMAGE, "
      "until=TIME|DURATION, dangling=true|false. A TEMPLATE uses {{.Repository}}, {{.Tag}}, "
      "{{.ID}}, {{.Digest}}, {{.Created}}, {{.CreatedAt}}, {{.Size}}, {{.Name}}; \"table "
      "TEMPLATE\" adds a header.",
      0, 1};
  po::options_description flags("Options");
  flags.add_options()("quiet,q", "print image IDs only")(
      "format", po::value<std::string>()->default_value("table"), "table, json, or a Go template")(
      "filter,f", po::value<std::vector<std::string>>(),
      "show only images that match (repeatable: all must)")(
      "digests", po::bool_switch(), "show manifest digests")("no-trunc", po::bool_switch(),
                                                             "show whole image IDs");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  std::string format = vm["format"].as<std::string>();
  bool no_trunc = vm["no-trunc"].as<bool>();
  oci::Store store = open_store();

  std::vector<ImageRow> rows;
  for (const oci::TaggedImage& image : store.images()) {
    ImageRow row;
    row.image = image;
    row.summary = summarize(store, image.descriptor);
    size_t colon = image.name.rfind(':');
    row.repository = colon == std::string::npos ? image.name : image.name.substr(0, colon);
    row.tag = colon == std::string::npos ? "" : image.name.substr(colon + 1);
    if (oci::media_type::is_manifest(image.descriptor.media_type)) {
      oci::Manifest m = oci::parse_manifest(store.read_blob(image.descriptor.digest));
      row.labels = oci::parse_image_config(store.read_blob(m.config.digest)).config.labels;
    } else if (oci::media_type::is_index(image.descriptor.media_type)) {
      // An index: as old as its first image, as big as its images together.
      for (const oci::Descriptor& d :
           oci::parse_index(store.read_blob(image.descriptor.digest)).manifests) {
        if (!store.has_blob(d.digest) || !oci::media_type::is_manifest(d.media_type))
          continue;
        ImageSummary child = summarize(store, d);
        if (row.summary.created.empty())
          row.summary.created = child.created;
        row.summary.size += child.size;
      }
    }
    rows.push_back(std::move(row));
  }
  auto created_of = [&](const std::string& ref) -> int64_t {
    oci::TaggedImage image = find_image(store, ref);
    std::optional<int64_t> t = parse_rfc3339(summarize(store, image.descriptor).created);
    if (!t)
      throw Error("image " + quote(ref) + " has no creation time to compare with");
    return *t;
  };
  std::vector<std::function<bool(const ImageRow&)>> keep;
  if (!operands.empty()) {
    std::string wanted = operands[0];
    size_t colon = wanted.rfind(':'), slash = wanted.rfind('/');
    bool with_tag = colon != std::string::npos && (slash == std::string::npos || colon > slash);
    std::string canonical = with_tag ? oci::Store::canonical_name(wanted) : "";
    keep.push_back([=](const ImageRow& r) {
      if (with_tag)
        return r.image.name == canonical;
      std::string repo = oci::Store::canonical_name(wanted + ":x");
      return r.repository == repo.substr(0, repo.size() - 2);
    });
  }
  if (vm.count("filter")) {
    for (const std::string& f : vm["filter"].as<std::vector<std::string>>()) {
      size_t eq = f.find('=');
      if (eq == std::string::npos)
        throw UsageError("--filter " + quote(f) + ": expected KEY=VALUE", spec.usage);
      std::string key = f.substr(0, eq), value = f.substr(eq + 1);
      if (key == "reference") {
        keep.push_back([=](const ImageRow& r) {
          return glob_match(value, r.image.name) || glob_match(value, r.repository) ||
                 glob_match(value + ":*", r.image.name);
        });
      } else if (key == "label") {
        size_t veq = value.find('=');
        std::string lkey = value.substr(0, veq);
        std::optional<std::string> lvalue;
        if (veq != std::string::npos)
          lvalue = value.substr(veq + 1);
        keep.push_back([=](const ImageRow& r) {
          auto it = r.labels.find(lkey);
          return it != r.labels.end() && (!lvalue || it->second == *lvalue);
        });
      } else if (key == "before" || key == "since") {
        int64_t pivot = created_of(value);
        bool before = key == "before";
        keep.push_back([=](const ImageRow& r) {
          std::optional<int64_t> t = parse_rfc3339(r.summary.created);
          return t && (before ? *t < pivot : *t > pivot);
        });
      } else if (key == "until") {
        std::optional<int64_t> limit = parse_rfc3339(value);
        if (!limit) {
          if (std::optional<int64_t> ns = frontend::parse_go_duration(value))
            limit = static_cast<int64_t>(std::time(nullptr)) - *ns / 1000000000;
        }
        if (!limit)
          throw UsageError("--filter until=" + value + ": expected an RFC 3339 time or a duration",
                           spec.usage);
        keep.push_back([=](const ImageRow& r) {
          std::optional<int64_t> t = parse_rfc3339(r.summary.created);
          return t && *t < *limit;
        });
      } else if (key == "dangling") {
        if (value != "true" && value != "false")
          throw UsageError("--filter dangling=" + value + ": expected true or false", spec.usage);
        // Every image the store lists has a name: none is dangling.
        bool dangling = value == "true";
        keep.push_back([=](const ImageRow& r) { return r.image.name.empty() == dangling; });
      } else {
        throw UsageError("--filter " + quote(key) +
                             ": kiln filters by reference, label, before, since, until, dangling",
                         spec.usage);
      }
    }
  }
  std::erase_if(rows, [&](const ImageRow& r) {
    return !std::all_of(keep.begin(), keep.end(), [&](const auto& k) { return k(r); });
  });

  auto fields_of = [&](const ImageRow& r) {
    oci::Digest id = oci::Digest::parse(r.summary.id);
    return std::map<std::string, std::string>{
        {"Repository", r.repository.empty() ? "<none>" : r.repository},
        {"Tag", r.tag.empty() ? "<none>" : r.tag},
        {"Name", r.image.name},
        {"ID", no_trunc ? id.str() : id.short_id()},
        {"Digest", r.image.descriptor.digest.str()},
        {"Created", time_ago(r.summary.created)},
        {"CreatedAt", r.summary.created},
        {"Size", human_size(r.summary.size)}};
  };
  if (vm.count("quiet")) {
    for (const ImageRow& r : rows)
      io.out << fields_of(r)["ID"] << "\n";
    return kExitOk;
  }
  if (format == "json") {
    nlohmann::ordered_json json = nlohmann::ordered_json::array();
    for (const ImageRow& r : rows) {
      json.push_back({{"name", r.image.name},
                      {"id", r.summary.id},
                      {"digest", r.image.descriptor.digest.str()},
                      {"media_type", r.image.descriptor.media_type},
                      {"created", r.summary.created},
                      {"size", r.summary.size},
                      {"labels", r.labels}});
    }
    io.out << json.dump(2) << "\n";
    return kExitOk;
  }
  if (format != "table") {
    std::string tmpl = format;
    if (starts_with(tmpl, "table ")) {
      tmpl = tmpl.substr(6);
      // The header: each field's name in capitals.
      std::map<std::string, std::string> names;
      for (const char* f :
           {"Repository", "Tag", "Name", "ID", "Digest", "Created", "CreatedAt", "Size"})
        names[f] = std::string(f) == "CreatedAt" ? "CREATED AT" : to_upper(f);
      io.out << render_template(tmpl, names) << "\n";
    }
    for (const ImageRow& r : rows)
      io.out << render_template(tmpl, fields_of(r)) << "\n";
    return kExitOk;
  }
  // The name column fits the longest name (signature tags "repo:sha256-<hex>.sig" are long).
  size_t width = 40;
  for (const ImageRow& r : rows)
    width = std::max(width, r.image.name.size() + 2);
  auto name_width = static_cast<int>(width);
  bool digests = vm["digests"].as<bool>();
  int id_width = no_trunc ? 73 : 15;
  io.out << std::left << std::setw(name_width) << "NAME";
  if (digests)
    io.out << std::setw(73) << "DIGEST";
  io.out << std::setw(id_width) << "IMAGE ID" << std::setw(22) << "CREATED"
         << "SIZE\n";
  for (const ImageRow& r : rows) {
    auto f = fields_of(r);
    io.out << std::left << std::setw(name_width)
           << (r.image.name.empty() ? "<none>" : r.image.name);
    if (digests)
      io.out << std::setw(73) << f["Digest"];
    io.out << std::setw(id_width) << f["ID"] << std::setw(22) << f["Created"] << f["Size"] << "\n";
  }
  return kExitOk;
}

namespace {

// {{.A.b.c}} looks up a path in `doc`; {{json .A}} writes the value as JSON. A string value is
// written as it is, anything else as compact JSON; a missing path is an error naming it.
std::string render_json_template(const std::string& tmpl, const nlohmann::ordered_json& doc,
                                 const char* usage) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl.compare(i, 2, "{{") != 0) {
      if (tmpl.compare(i, 2, "\\n") == 0) {
        out += '\n';
        i += 2;
      } else if (tmpl.compare(i, 2, "\\t") == 0) {
        out += '\t';
        i += 2;
      } else {
        out += tmpl[i++];
      }
      continue;
    }
    size_t end = tmpl.find("}}", i);
    if (end == std::string::npos)
      throw UsageError("--format: {{ without }}", usage);
    std::string expr(trim(std::string_view(tmpl).substr(i + 2, end - i - 2)));
    bool as_json = starts_with(expr, "json ");
    if (as_json)
      expr = std::string(trim(std::string_view(expr).substr(5)));
    if (!starts_with(expr, "."))
      throw UsageError("--format: expected {{.Field}} or {{json .Field}}, not {{" + expr + "}}",
                       usage);
    const nlohmann::ordered_json* value = &doc;
    if (expr != ".") {
      for (const std::string& key : split(expr.substr(1), '.')) {
        if (!value->is_object() || !value->contains(key))
          throw Error("--format: " + expr + " is not in the output (at " + key + ")");
        value = &(*value)[key];
      }
    }
    out += !as_json && value->is_string() ? value->get<std::string>() : value->dump();
    i = end + 2;
  }
  return out;
}

}  // namespace

int inspect_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "inspect",
      "kiln inspect [--format json|TEMPLATE] [--attestations] [--tls-verify=false] IMAGE",
      "Show an image's manifest (or index) and config as JSON: from the store, or with "
      "docker://REF from a registry without pulling it. A TEMPLATE picks fields: {{.Id}}, "
      "{{.Config.config.Labels}}, {{json .Manifest.layers}}. --attestations shows the in-toto "
      "statements (SBOM, provenance) attached to each platform's image instead.",
      1, 1};
  po::options_description flags("Options");
  flags.add_options()("format,f", po::value<std::string>()->default_value("json"),
                      "json, or a Go template over the JSON")(
      "attestations", po::bool_switch(),
      "the attestations attached to the image: each platform's statements, whole");
  add_registry_flags(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  // Where the documents come from: the store, or a registry (manifests and configs only).
  std::function<std::string(const oci::Descriptor&)> read;
  nlohmann::ordered_json out;
  oci::Descriptor top_desc;
  std::optional<oci::Store> store;
  std::unique_ptr<oci::RegistryClient> client;
  oci::Reference ref;
  if (starts_with(operands[0], "docker://")) {
    ref = oci::parse_reference(operands[0].substr(9));
    client = std::make_unique<oci::RegistryClient>(ref.domain, registry_options(vm, spec));
    oci::RegistryClient::Manifest m =
        client->get_manifest(ref.path, ref.digest ? ref.digest->str() : ref.tag);
    top_desc.media_type = m.media_type;
    top_desc.digest = m.digest;
    top_desc.size = static_cast<int64_t>(m.bytes.size());
    out["Name"] = ref.familiar();
    read = [&, top = m](const oci::Descriptor& d) -> std::string {
      if (d.digest == top.digest)
        return top.bytes;
      if (oci::media_type::is_manifest(d.media_type) || oci::media_type::is_index(d.media_type))
        return client->get_manifest(ref.path, d.digest.str()).bytes;
      StringSink sink;
      client->get_blob(ref.path, d, sink);
      return sink.bytes;
    };
  } else {
    store.emplace(open_store());
    oci::TaggedImage image = find_image(*store, operands[0]);
    top_desc = image.descriptor;
    out["Name"] = image.name;
    read = [&](const oci::Descriptor& d) { return store->read_blob(d.digest); };
  }
  out["Digest"] = top_desc.digest.str();
  out["MediaType"] = top_desc.media_type;
  std::string top = read(top_desc);
  auto describe_manifest = [&](const oci::Descriptor& d) {
    nlohmann::ordered_json m;
    std::string bytes = read(d);
    oci::Manifest manifest = oci::parse_manifest(bytes);
    m["Id"] = manifest.config.digest.str();
    m["Manifest"] = nlohmann::ordered_json::parse(bytes);
    m["Config"] = nlohmann::ordered_json::parse(read(manifest.config));
    return m;
  };
  if (vm["attestations"].as<bool>()) {
    // BuildKit's storage: attestation manifests in the index, one per image manifest.
    out["Attestations"] = nlohmann::ordered_json::array();
    // OCI 1.1 referrers (--attest-format referrers): per image manifest, in the registry's
    // referrers API or fallback tag, or under the image's repository in the store.
    std::vector<oci::Descriptor> subjects;
    if (oci::media_type::is_index(top_desc.media_type)) {
      for (const oci::Descriptor& d : oci::parse_index(top).manifests) {
        if (oci::media_type::is_manifest(d.media_type) && !exporter::is_attestation_manifest(d))
          subjects.push_back(d);
      }
    } else {
      subjects.push_back(top_desc);
    }
    std::string repository;
    if (store && !out["Name"].get<std::string>().empty()) {
      oci::Reference named = oci::parse_reference(out["Name"].get<std::string>());
      named.tag.clear();
      named.digest.reset();
      repository = named.familiar();
    }
    for (const oci::Descriptor& subject : subjects) {
      std::vector<oci::Descriptor> referrers =
          client               ? oci::registry_referrers(*client, ref.path, subject.digest)
          : repository.empty() ? std::vector<oci::Descriptor>{}
                               : oci::store_referrers(*store, repository, subject.digest);
      nlohmann::ordered_json entry;
      if (subject.platform)
        entry["Platform"] = subject.platform->to_string();
      entry["Manifest"] = subject.digest.str();
      entry["Storage"] = "referrers";
      entry["Referrers"] = nlohmann::ordered_json::array();
      entry["Statements"] = nlohmann::ordered_json::array();
      for (const oci::Descriptor& r : referrers) {
        if (r.artifact_type != exporter::kInTotoMediaType)
          continue;
        entry["Referrers"].push_back(r.digest.str());
        for (const oci::Descriptor& layer : oci::parse_manifest(read(r)).layers) {
          if (layer.media_type == exporter::kInTotoMediaType)
            entry["Statements"].push_back(nlohmann::ordered_json::parse(read(layer)));
        }
      }
      if (!entry["Referrers"].empty())
        out["Attestations"].push_back(std::move(entry));
    }
    if (oci::media_type::is_index(top_desc.media_type)) {
      oci::Index index = oci::parse_index(top);
      for (const oci::Descriptor& d : index.manifests) {
        if (!exporter::is_attestation_manifest(d))
          continue;
        std::string about = d.annotations.at(exporter::kReferenceDigestAnnotation);
        nlohmann::ordered_json entry;
        for (const oci::Descriptor& image : index.manifests) {
          if (image.digest.str() == about && image.platform)
            entry["Platform"] = image.platform->to_string();
        }
        entry["Manifest"] = about;
        entry["Storage"] = "index";
        entry["AttestationManifest"] = d.digest.str();
        entry["Statements"] = nlohmann::ordered_json::array();
        for (const oci::Descriptor& layer : oci::parse_manifest(read(d)).layers) {
          if (layer.media_type != exporter::kInTotoMediaType)
            continue;
          entry["Statements"].push_back(nlohmann::ordered_json::parse(read(layer)));
        }
        out["Attestations"].push_back(std::move(entry));
      }
    }
  } else if (oci::media_type::is_index(top_desc.media_type)) {
    out["Index"] = nlohmann::ordered_json::parse(top);
    out["Manifests"] = nlohmann::ordered_json::array();
    for (const oci::Descriptor& d : oci::parse_index(top).manifests) {
      if (!oci::media_type::is_manifest(d.media_type) ||
          (d.platform && d.platform->os == "unknown"))
        continue;  // attestations and nested indexes are listed in Index only
      nlohmann::ordered_json m = describe_manifest(d);
      if (d.platform)
        m["Platform"] = d.platform->to_string();
      out["Manifests"].push_back(m);
    }
  } else {
    nlohmann::ordered_json m = describe_manifest(top_desc);
    out["Id"] = m["Id"];
    out["Manifest"] = m["Manifest"];
    out["Config"] = m["Config"];
  }
  std::string format = vm["format"].as<std::string>();
  if (format == "json")
    io.out << out.dump(2) << "\n";
  else
    io.out << render_json_template(format, out, spec.usage) << "\n";
  return kExitOk;
}

int tag_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{"tag", "kiln tag IMAGE NEW-NAME...", "Add names to an image.", 2,
                                -1};
  std::vector<std::string> operands;
  if (!parse_command(spec, args, operands, io))
    return kExitOk;
  oci::Store store = open_store();
  oci::TaggedImage image = find_image(store, operands[0]);
  for (size_t i = 1; i < operands.size(); ++i)
    store.tag(image.descriptor, operands[i]);
  return kExitOk;
}

int rmi_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{"rmi", "kiln rmi [--force] IMAGE... | --all",
                                "Remove image names from the store (blobs go with 'kiln prune').",
                                0, -1};
  po::options_description flags("Options");
  flags.add_options()("force,f", "remove every name of an image given by ID")(
      "all,a", po::bool_switch(), "remove every name in the store");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  bool all = vm["all"].as<bool>();
  if (all == !operands.empty())
    throw UsageError(all ? "give IMAGEs or --all, not both" : "missing argument", spec.usage);
  oci::Store store = open_store();
  if (all) {
    for (const oci::TaggedImage& image : store.images()) {
      store.untag(image.name);
      io.out << "Untagged " << image.name << "\n";
    }
    return kExitOk;
  }
  for (const std::string& ref : operands) {
    oci::TaggedImage image = find_image(store, ref);
    if (!image.name.empty() && oci::Store::canonical_name(ref) == image.name) {
      store.untag(image.name);
      io.out << "Untagged " << image.name << "\n";
      continue;
    }
    std::vector<std::string> names;
    for (const oci::TaggedImage& other : store.images()) {
      if (other.descriptor.digest == image.descriptor.digest)
        names.push_back(other.name);
    }
    if (names.size() > 1 && !vm.count("force")) {
      throw Error("image " + ref + " has several names (" + join(names, ", ") +
                  "); remove them by name or use --force");
    }
    for (const std::string& name : names) {
      store.untag(name);
      io.out << "Untagged " << name << "\n";
    }
  }
  return kExitOk;
}

int save_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "save", "kiln save -o FILE [--format docker-archive|oci-archive|oci-dir] IMAGE",
      "Write an image from the store to an archive or an OCI layout.", 1, 1};
  po::options_description flags("Options");
  flags.add_options()("output,o", po::value<std::string>(), "the file (or directory) to write")(
      "format", po::value<std::string>()->default_value("docker-archive"),
      "docker-archive, oci-archive or oci-dir");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  if (!vm.count("output"))
    throw UsageError("missing -o FILE", spec.usage);
  std::string format = vm["format"].as<std::string>();
  std::string output = vm["output"].as<std::string>();
  oci::Store store = open_store();
  oci::TaggedImage image = find_image(store, operands[0]);
  std::vector<std::string> names;
  if (!image.name.empty())
    names.push_back(image.name);
  if (format == "docker-archive") {
    exporter::write_docker_archive(store, image.descriptor, names, output);
  } else if (format == "oci-archive") {
    exporter::write_oci_archive(store, image.descriptor, names, output);
  } else if (format == "oci-dir") {
    exporter::write_oci_layout(store, image.descriptor, names, output);
  } else {
    throw UsageError("--format must be docker-archive, oci-archive or oci-dir", spec.usage);
  }
  return kExitOk;
}

int prune_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "prune", "kiln prune [--all] [--keep-storage SIZE] [--filter until=DURATION] [--force]",
      "Remove blobs no image or cache entry needs, unused snapshots and leftovers of interrupted\n"
      "builds. Cache entries stay unless --all, --filter until= or --keep-storage drops them;\n"
      "tagged images always stay.",
      0, 0};
  po::options_description flags("Options");
  flags.add_options()("all,a", "remove every cache entry, snapshot and cache mount too")(
      "keep-storage", po::value<std::string>(),
      "drop least recently used cache entries until blobs and snapshots take at most SIZE "
      "(e.g. 10GB, 512MiB)")("filter", po::value<std::vector<std::string>>(),
                             "until=DURATION: drop cache entries not used for DURATION (e.g. 24h)")(
      "force,f", "do not ask for confirmation (kiln never asks)");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  oci::PruneOptions options;
  options.all = vm.count("all") > 0;
  if (vm.count("keep-storage")) {
    std::string size = vm["keep-storage"].as<std::string>();
    options.keep_storage = parse_size(size);
    if (!options.keep_storage) {
      throw UsageError(
          "--keep-storage " + quote(size) + ": not a size (bytes, or e.g. 512MB, 10GB, 1.5GiB)",
          spec.usage);
    }
  }
  if (vm.count("filter")) {
    for (const std::string& filter : vm["filter"].as<std::vector<std::string>>()) {
      size_t eq = filter.find('=');
      std::string key = filter.substr(0, eq);
      if (eq == std::string::npos || key != "until") {
        throw UsageError("--filter " + quote(filter) + ": the only filter is until=DURATION",
                         spec.usage);
      }
      std::optional<int64_t> nanoseconds = frontend::parse_go_duration(filter.substr(eq + 1));
      if (!nanoseconds || *nanoseconds < 0) {
        throw UsageError("--filter " + quote(filter) + ": not a duration (e.g. 24h, 90m, 1h30m)",
                         spec.usage);
      }
      options.until_seconds = *nanoseconds / 1'000'000'000;
    }
  }
  // The store is chosen as the invoking user. A rootless build leaves files owned by subordinate
  // ids in snapshots and scratch directories; only inside the build's user namespace can they be
  // removed.
  fs::path root = oci::Store::default_root();
  oci::Store created_when_missing(root);
  runner::enter_build_user_namespace({});
  oci::PruneReport report = oci::prune(root, options);
  io.out << "Deleted " << count_of(report.blobs, "blob") << ", "
         << count_of(report.snapshots, "snapshot") << ", "
         << count_of(report.records, "cache record") << ", "
         << count_of(report.cache_mounts, "cache mount") << "; reclaimed "
         << human_size(static_cast<int64_t>(report.reclaimed_bytes)) << "\n";
  std::vector<std::string> leftovers;
  if (report.leases)
    leftovers.push_back(count_of(report.leases, "stale lease"));
  if (report.temp_files)
    leftovers.push_back(count_of(report.temp_files, "temporary file"));
  if (!leftovers.empty())
    io.out << "Removed " << join(leftovers, " and ") << "\n";
  return kExitOk;
}

int check_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "check", "kiln check",
      "Verify the store without changing it: every blob's content matches its\n"
      "digest, tagged images have all their blobs, cache records parse and have\n"
      "their layers. Lists problems and leftovers of interrupted builds (which\n"
      "'kiln prune' removes); exits 1 when there are problems.",
      0, 0};
  std::vector<std::string> operands;
  if (!parse_command(spec, args, operands, io))
    return kExitOk;
  oci::CheckReport report = oci::check(oci::Store::default_root());
  for (const std::string& problem : report.problems)
    io.out << "problem: " << problem << "\n";
  for (const std::string& leftover : report.leftovers)
    io.out << "leftover: " << leftover << "\n";
  io.out << "checked " << count_of(report.blobs, "blob") << ", " << count_of(report.images, "image")
         << ", " << count_of(report.records, "cache record") << ", "
         << count_of(report.snapshots, "snapshot") << ": "
         << (report.problems.empty() ? "OK" : count_of(report.problems.size(), "problem")) << "\n";
  return report.problems.empty() ? kExitOk : kExitFailure;
}

}  // namespace kiln::cli
