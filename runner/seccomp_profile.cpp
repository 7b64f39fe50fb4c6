#include "seccomp_profile.hpp"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::runner::detail {
namespace {

// Allowed whatever the arguments: moby's unconditional allowlist, in its order so the two can be
// compared. Names this libseccomp does not know are skipped, as moby does; names that exist
// only on some architectures of the filter (chown32 on i386) take effect only there.
constexpr std::string_view kAllowedSyscalls =
    "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 "
    "clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 "
    "clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup "
    "dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 "
    "epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat "
    "faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown "
    "fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr "
    "fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex "
    "futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 "
    "geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid "
    "getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 "
    "getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid "
    "gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 "
    "inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 "
    "ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc "
    "kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 "
    "lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat "
    "lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat "
    "mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive "
    "mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget "
    "msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat "
    "_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc "
    "pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 "
    "process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink "
    "readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr "
    "rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending "
    "rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait "
    "rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam "
    "sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval "
    "sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam "
    "sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop "
    "semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 "
    "setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority "
    "setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 "
    "setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 "
    "setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask "
    "sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat "
    "sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete "
    "timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create "
    "timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate "
    "truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes "
    "vfork vmsplice wait4 waitid waitpid write writev";

// moby gates these on kernel >= 4.8, where seccomp runs after ptrace; kiln needs far newer.
constexpr const char* kPtraceSyscalls[] = {"process_vm_readv", "process_vm_writev", "ptrace"};

// The profile's architecture-specific allowlist, for the architecture we are built for. A rule
// applies to every architecture in the filter, so arch_prctl is also allowed to i386 code, which
// moby's profile leaves out; it only sets that process's own FS/GS bases.
#if defined(__x86_64__) || defined(__i386__)
constexpr std::array kArchSyscalls = {"arch_prctl", "modify_ldt"};
#elif defined(__aarch64__) || defined(__arm__)
constexpr std::array kArchSyscalls = {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                                      "breakpoint",       "cacheflush",          "set_tls"};
#elif defined(__powerpc64__)
constexpr std::array kArchSyscalls = {"sync_file_range2", "swapcontext"};
#elif defined(__s390x__)
constexpr std::array kArchSyscalls = {"s390_pci_mmio_read", "s390_pci_mmio_write",
                                      "s390_runtime_instr"};
#elif defined(__riscv)
constexpr std::array kArchSyscalls = {"riscv_flush_icache"};
#else
constexpr std::array<const char*, 0> kArchSyscalls = {};
#endif

// The namespace flags a process without CAP_SYS_ADMIN may not pass to clone (moby's
// 2114060288): a build step must not make nested namespaces to escape the profile.
constexpr scmp_datum_t kCloneNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                                              CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                                              CLONE_NEWNET;
#if defined(__s390x__)
constexpr unsigned kCloneFlagsArg = 1;  // s390 swaps clone's first two arguments
#else
constexpr unsigned kCloneFlagsArg = 0;
#endif

// A syscall allowed only when one argument satisfies one comparison.
struct ConditionalRule {
  const char* name;
  unsigned arg;
  scmp_compare op;
  scmp_datum_t a;  // the value, or the mask for SCMP_CMP_MASKED_EQ
  scmp_datum_t b;  // the expected masked value for SCMP_CMP_MASKED_EQ
};

constexpr ConditionalRule kConditionalRules[] = {
    {"socket", 0, SCMP_CMP_NE, AF_VSOCK, 0},
    // personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query 0xffffffff.
    {"personality", 0, SCMP_CMP_EQ, 0x0, 0},
    {"personality", 0, SCMP_CMP_EQ, 0x8, 0},
    {"personality", 0, SCMP_CMP_EQ, 0x20000, 0},
    {"personality", 0, SCMP_CMP_EQ, 0x20008, 0},
    {"personality", 0, SCMP_CMP_EQ, 0xffffffff, 0},
    {"clone", kCloneFlagsArg, SCMP_CMP_MASKED_EQ, kCloneNamespaceFlags, 0},
};

// clone3 passes its flags in memory seccomp cannot inspect; ENOSYS makes libc use clone.
constexpr const char* kEnosysSyscalls[] = {"clone3"};

std::vector<std::string> split_names(std::string_view names) {
  std::vector<std::string> out;
  while (!names.empty()) {
    size_t end = std::min(names.find(' '), names.size());
    if (end > 0)
      out.emplace_back(names.substr(0, end));
    names.remove_prefix(std::min(end + 1, names.size()));
  }
  return out;
}

using FilterPtr = std::unique_ptr<void, decltype(&seccomp_release)>;

[[noreturn]] void fail(const std::string& step, int rc) {
  throw Error("seccomp: " + step + ": " + std::strerror(-rc));
}

void add_sub_architectures(scmp_filter_ctx ctx) {
#if defined(__x86_64__)
  const uint32_t sub_arches[] = {SCMP_ARCH_X86, SCMP_ARCH_X32};
#elif defined(__aarch64__)
  const uint32_t sub_arches[] = {SCMP_ARCH_ARM};
#elif defined(__s390x__)
  const uint32_t sub_arches[] = {SCMP_ARCH_S390};
#else
  const uint32_t sub_arches[] = {SCMP_ARCH_NATIVE};
#endif
  for (uint32_t arch : sub_arches) {
    int rc = seccomp_arch_add(ctx, arch);
    if (rc != 0 && rc != -EEXIST)
      fail("add architecture " + std::to_string(arch), rc);
  }
}

// Adds one rule; a name libseccomp cannot resolve is not on any architecture we filter.
void add_rule(scmp_filter_ctx ctx, const char* name, uint32_t action, unsigned count,
              const scmp_arg_cmp* conditions) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return;
  int rc = seccomp_rule_add_array(ctx, action, nr, count, conditions);
  if (rc != 0)
    fail(std::string("add rule for ") + name, rc);
}

// Serializes the filter through a memfd: libseccomp 2.5 can only export to a file descriptor.
std::vector<sock_filter> export_program(scmp_filter_ctx ctx) {
  UniqueFd memfd(::memfd_create("kiln-seccomp", MFD_CLOEXEC));
  if (!memfd)
    throw Error(std::string("seccomp: memfd_create: ") + std::strerror(errno));
  if (int rc = seccomp_export_bpf(ctx, memfd.get()); rc != 0)
    fail("export", rc);
  if (::lseek(memfd.get(), 0, SEEK_SET) != 0)
    throw Error(std::string("seccomp: seek exported filter: ") + std::strerror(errno));
  std::string bytes = read_all(memfd.get(), "exported seccomp filter");
  // The kernel takes at most BPF_MAXINSNS instructions in one filter.
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0 ||
      bytes.size() / sizeof(sock_filter) > BPF_MAXINSNS)
    throw Error("seccomp: exported filter has " + std::to_string(bytes.size()) + " bytes");
  std::vector<sock_filter> program(bytes.size() / sizeof(sock_filter));
  std::memcpy(program.data(), bytes.data(), bytes.size());
  return program;
}

scmp_compare to_libseccomp(SeccompCompare op) {
  switch (op) {
    case SeccompCompare::kNotEqual:
      return SCMP_CMP_NE;
    case SeccompCompare::kMaskedEqual:
      return SCMP_CMP_MASKED_EQ;
    case SeccompCompare::kEqual:
      break;
  }
  return SCMP_CMP_EQ;
}

bool is_chown_call(const char* name) {
  static const std::set<std::string> kChown = {"chown",   "fchown",   "lchown",  "fchownat",
                                               "chown32", "fchown32", "lchown32"};
  return kChown.count(name) != 0;
}

std::vector<sock_filter> compile_default_profile(bool ignore_chown) {
  FilterPtr filter(seccomp_init(SCMP_ACT_ERRNO(EPERM)), &seccomp_release);
  if (!filter)
    throw Error("seccomp: seccomp_init failed");
  scmp_filter_ctx ctx = filter.get();
  add_sub_architectures(ctx);
  for (const SeccompRule& rule : default_seccomp_rules()) {
    uint32_t action = rule.enosys ? SCMP_ACT_ERRNO(ENOSYS) : SCMP_ACT_ALLOW;
    // Returns 0 without doing anything: the call "succeeds" and the file stays the caller's.
    if (ignore_chown && is_chown_call(rule.name))
      action = SCMP_ACT_ERRNO(0);
    if (rule.arg < 0) {
      add_rule(ctx, rule.name, action, 0, nullptr);
      continue;
    }
    scmp_arg_cmp condition{static_cast<unsigned>(rule.arg), to_libseccomp(rule.op), rule.a, rule.b};
    add_rule(ctx, rule.name, action, 1, &condition);
  }
  return export_program(ctx);
}

}  // namespace

const std::vector<SeccompRule>& default_seccomp_rules() {
  static const std::vector<SeccompRule> rules = [] {
    std::vector<SeccompRule> out;
    static const std::vector<std::string> allowed = split_names(kAllowedSyscalls);
    for (const std::string& name : allowed)
      out.push_back({name.c_str()});
    for (const char* name : kPtraceSyscalls)
      out.push_back({name});
    for (const char* name : kArchSyscalls)
      out.push_back({name});
    for (const ConditionalRule& rule : kConditionalRules) {
      SeccompCompare op = rule.op == SCMP_CMP_NE          ? SeccompCompare::kNotEqual
                          : rule.op == SCMP_CMP_MASKED_EQ ? SeccompCompare::kMaskedEqual
                                                          : SeccompCompare::kEqual;
      out.push_back({rule.name, false, static_cast<int>(rule.arg), op, rule.a, rule.b});
    }
    for (const char* name : kEnosysSyscalls)
      out.push_back({name, true});
    return out;
  }();
  return rules;
}

const std::vector<const char*>& default_seccomp_architectures() {
#if defined(__x86_64__)
  static const std::vector<const char*> arches = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                  "SCMP_ARCH_X32"};
#elif defined(__aarch64__)
  static const std::vector<const char*> arches = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
#elif defined(__s390x__)
  static const std::vector<const char*> arches = {"SCMP_ARCH_S390X", "SCMP_ARCH_S390"};
#else
  static const std::vector<const char*> arches = {"SCMP_ARCH_NATIVE"};
#endif
  return arches;
}

const sock_fprog& default_seccomp_program() {
  static const std::vector<sock_filter> program = compile_default_profile(false);
  static const sock_fprog fprog{static_cast<unsigned short>(program.size()),
                                const_cast<sock_filter*>(program.data())};
  return fprog;
}

const sock_fprog& chown_ignoring_seccomp_program() {
  static const std::vector<sock_filter> program = compile_default_profile(true);
  static const sock_fprog fprog{static_cast<unsigned short>(program.size()),
                                const_cast<sock_filter*>(program.data())};
  return fprog;
}

}  // namespace kiln::runner::detail
