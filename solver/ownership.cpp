#include "ownership.hpp"

#include <sys/stat.h>

#include <charconv>
#include <optional>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "rootfs.hpp"

namespace kiln::solver {
namespace {

std::optional<uint32_t> parse_id(std::string_view s) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    return std::nullopt;
  return value;
}

// Fields of the line in a passwd/group file whose first field is `name`.
std::optional<std::vector<std::string>> find_entry(const std::optional<std::string>& file,
                                                   std::string_view name) {
  if (!file)
    return std::nullopt;
  for (const std::string& line : split(*file, '\n')) {
    std::vector<std::string> fields = split(line, ':');
    if (fields.size() >= 3 && fields[0] == name)
      return fields;
  }
  return std::nullopt;
}

}  // namespace

Owner resolve_owner(std::string_view spec, const std::filesystem::path& root) {
  size_t colon = spec.find(':');
  std::string_view user = spec.substr(0, colon);
  std::optional<std::string_view> group;
  if (colon != std::string_view::npos)
    group = spec.substr(colon + 1);
  if (user.empty() && !group)
    throw Error("invalid --chown " + quote(spec) + ": the user is empty");

  Owner owner;
  std::optional<std::string> passwd;
  bool passwd_read = false;
  auto read_passwd = [&] {
    if (!passwd_read)
      passwd = read_in_root(root, "etc/passwd");
    passwd_read = true;
    return passwd;
  };
  if (user.empty()) {
    // ":group": root and the group.
  } else if (auto uid = parse_id(user)) {
    owner.uid = *uid;
    owner.gid = *uid;
  } else {
    // BuildKit's readUser: the first passwd entry with that name, or 0:0 when there is none.
    auto entry = find_entry(read_passwd(), user);
    if (entry && entry->size() >= 4) {
      owner.uid = parse_id((*entry)[2]).value_or(0);
      owner.gid = parse_id((*entry)[3]).value_or(0);
    }
  }
  if (group) {
    if (group->empty())
      throw Error("invalid --chown " + quote(spec) + ": the group is empty");
    if (auto gid = parse_id(*group)) {
      owner.gid = *gid;
    } else {
      // An unknown group name leaves the gid the user gave (BuildKit's readUser).
      auto entry = find_entry(read_in_root(root, "etc/group"), *group);
      if (auto gid_field = entry ? parse_id((*entry)[2]) : std::nullopt)
        owner.gid = *gid_field;
    }
  }
  return owner;
}

ProcessUser resolve_process_user(std::string_view spec, const std::filesystem::path& root) {
  ProcessUser user;
  if (spec.empty())
    spec = "0";  // root, looked up like any user (its home, its groups)
  size_t colon = spec.find(':');
  std::string_view name = spec.substr(0, colon);
  std::optional<std::string> passwd = read_in_root(root, "etc/passwd");
  std::optional<std::vector<std::string>> entry;
  if (auto uid = parse_id(name)) {
    user.uid = *uid;
    for (const std::string& line : passwd ? split(*passwd, '\n') : std::vector<std::string>{}) {
      std::vector<std::string> fields = split(line, ':');
      if (fields.size() >= 4 && fields[2] == std::to_string(*uid)) {
        entry = fields;
        break;
      }
    }
  } else {
    entry = find_entry(passwd, name);
    if (!entry || entry->size() < 4 || !parse_id((*entry)[2])) {
      throw Error("unable to find user " + std::string(name) +
                  ": no matching entries in passwd file");
    }
    user.uid = *parse_id((*entry)[2]);
  }
  if (entry && entry->size() >= 4)
    user.gid = parse_id((*entry)[3]).value_or(0);
  if (entry && entry->size() >= 6 && !(*entry)[5].empty())
    user.home = (*entry)[5];
  std::optional<std::string> group_file = read_in_root(root, "etc/group");
  if (colon != std::string_view::npos) {
    std::string_view group = spec.substr(colon + 1);
    if (auto gid = parse_id(group)) {
      user.gid = *gid;
    } else {
      auto g = find_entry(group_file, group);
      auto gid_field = g ? parse_id((*g)[2]) : std::nullopt;
      if (!gid_field) {
        throw Error("unable to find group " + std::string(group) +
                    ": no matching entries in group file");
      }
      user.gid = *gid_field;
    }
  }
  user.groups.push_back(user.gid);
  if (colon == std::string_view::npos && entry && group_file) {
    // Supplementary groups only when the group was not given explicitly, as runc does.
    const std::string& user_name = (*entry)[0];
    for (const std::string& line : split(*group_file, '\n')) {
      std::vector<std::string> fields = split(line, ':');
      if (fields.size() < 4)
        continue;
      for (const std::string& member : split(fields[3], ',')) {
        auto gid = parse_id(fields[2]);
        if (member == user_name && gid && *gid != user.gid)
          user.groups.push_back(*gid);
      }
    }
  }
  return user;
}

}  // namespace kiln::solver
