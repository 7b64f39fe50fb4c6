#include "kiln/base/subprocess.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

extern char** environ;

namespace kiln {

namespace {

// execve's argv over `args` (which must outlive it).
std::vector<char*> c_argv(std::vector<std::string>& args) {
  std::vector<char*> raw;
  for (std::string& a : args)
    raw.push_back(a.data());
  raw.push_back(nullptr);
  return raw;
}

}  // namespace

int run_to_end(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  if (argv.empty())
    throw Error("run: no program");
  std::vector<std::string> args = argv;
  std::vector<char*> raw = c_argv(args);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw Error("cannot run " + argv[0] + ": " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

ProgramOutput run_with_input(const std::vector<std::string>& argv, const std::string& input) {
  if (argv.empty())
    throw Error("run: no program");
  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0)
    throw Error(std::string("pipe: ") + std::strerror(errno));
  UniqueFd in_read(in_pipe[0]), in_write(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    throw Error(std::string("pipe: ") + std::strerror(errno));
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  UniqueFd err_file(::memfd_create("kiln-program-stderr", MFD_CLOEXEC));
  if (!err_file)
    throw Error(std::string("memfd_create: ") + std::strerror(errno));
  std::vector<std::string> args = argv;
  std::vector<char*> raw = c_argv(args);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_file.get(), 2);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw Error("cannot run " + argv[0] + ": " + std::strerror(rc));
  in_read.reset();
  out_write.reset();
  // A program that exits without reading its input must not kill kiln: SIGPIPE is blocked in
  // this thread while writing, and one it raised is taken off the queue before unblocking.
  sigset_t pipe_signal, saved;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, &saved);
  size_t written = 0;
  while (written < input.size()) {
    ssize_t n = ::write(in_write.get(), input.data() + written, input.size() - written);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    written += static_cast<size_t>(n);
  }
  in_write.reset();
  if (!sigismember(&saved, SIGPIPE)) {
    timespec none{};
    while (::sigtimedwait(&pipe_signal, nullptr, &none) == SIGPIPE) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ProgramOutput result;
  result.out = read_all(out_read.get(), argv[0] + " output");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::lseek(err_file.get(), 0, SEEK_SET);
  result.err = read_all(err_file.get(), argv[0] + " errors");
  return result;
}

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (const std::string& dir : split(path ? path : "/usr/local/bin:/usr/bin:/bin", ':')) {
    std::filesystem::path candidate = std::filesystem::path(dir.empty() ? "." : dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0)
      return candidate.string();
  }
  return {};
}

std::string last_line_of(const std::filesystem::path& file) {
  std::string text;
  try {
    text = read_file(file);
  } catch (const Error&) {
    return {};
  }
  std::string_view trimmed = trim(text);
  size_t newline = trimmed.rfind('\n');
  return std::string(newline == std::string_view::npos ? trimmed : trimmed.substr(newline + 1));
}

}  // namespace kiln
