#include "process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::test {
namespace {

// The pipes the child writes to; closed on every path.
struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() {
    if (pipe2(fds, O_CLOEXEC) != 0)
      fds[0] = fds[1] = -1;
  }
  ~Pipe() { close_both(); }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_end(int i) {
    if (fds[i] >= 0)
      ::close(fds[i]);
    fds[i] = -1;
  }
  void close_both() {
    close_end(0);
    close_end(1);
  }
};

}  // namespace

ProcessResult run_program(const std::vector<std::string>& args, const std::string& cwd,
                          const std::string& input, const std::vector<std::string>& env) {
  ProcessResult result;
  Pipe in, out, err;
  if (in.fds[0] < 0 || out.fds[0] < 0 || err.fds[0] < 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return result;
  }
  std::vector<std::string> argv_storage = args;
  std::vector<char*> argv;
  for (std::string& a : argv_storage)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return result;
  }
  if (pid == 0) {
    dup2(in.fds[0], 0);
    dup2(out.fds[1], 1);
    dup2(err.fds[1], 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0)
      _exit(127);
    for (const std::string& e : env)
      putenv(const_cast<char*>(e.c_str()));
    execvp(argv[0], argv.data());
    _exit(127);
  }
  in.close_end(0);
  out.close_end(1);
  err.close_end(1);
  // Feed stdin fully first: inputs in tests are small, far below the pipe buffer.
  size_t written = 0;
  while (written < input.size()) {
    ssize_t n = write(in.fds[1], input.data() + written, input.size() - written);
    if (n <= 0)
      break;
    written += static_cast<size_t>(n);
  }
  in.close_end(1);
  pollfd fds[2] = {{out.fds[0], POLLIN, 0}, {err.fds[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  while (open_count > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
        continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// Only test binaries that run kiln define KILN_BINARY (the path of the kiln executable).
#ifdef KILN_BINARY
ProcessResult run_kiln(const std::vector<std::string>& args, const std::string& cwd,
                       const std::string& input, const std::vector<std::string>& env) {
  std::vector<std::string> argv = {KILN_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, cwd, input, env);
}
#endif

}  // namespace kiln::test
