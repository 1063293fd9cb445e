/*
 * ProcDump 3.x's library API as libtripdump exports it, tested from ProcDump's documented API (its
 * ProcDumpLib.h: pdWriteDump writes dumpPath + "." + pid, returns 0 or non-zero, fills an error string
 * freed with pdFreeError): this file includes only the compatible header (native/lib/procdump) and links
 * with -ltripdump, as a program written for ProcDump would. The target is a real program (this one,
 * re-executed with --target: a thread burning CPU as ProcDumpTestApplication's "burn" does, a marker in
 * its data and its heap), each dump is checked by name, mode and content, and gdb loads it with the
 * target's executable. The error paths are ProcDump's lib_api_* scenarios: pid 0, -1 and gone, NULL and
 * empty path, a folder that does not exist, an existing file without overwrite; plus what libtripdump
 * adds: errno says why. procdump_cxx.cc makes the same calls from C++.
 *
 * Usage: procdump_test [FILTER]   (runs the cases whose name contains FILTER). Ends with "N passed, N
 * failed". Without gdb the content check is skipped with a reason, except under TRIPDUMP_NO_SKIP=1 where it
 * fails.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ProcDumpLib.h"

/* procdump_cxx.cc */
int cxx_write_dump(pid_t pid, const char* path, int mask, int overwrite, int* err);

#define MARKER_VALUE 0xDEADBEEFu
static const char kHeapMarker[] = "procdump-lib-test-heap-marker";

static char g_root[64];
static char g_dir[256]; /* this case's own folder, empty when it starts */
static char g_exe[PATH_MAX];
static pid_t g_target = -1;
static int g_target_stdin = -1;
static int g_passed, g_failed, g_case_failed;

#define CHECK(cond, ...)                                           \
  do {                                                             \
    if (!(cond)) {                                                 \
      fprintf(stderr, "  %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                \
      fprintf(stderr, "\n");                                       \
      g_case_failed = 1;                                           \
    }                                                              \
  } while (0)

/* ---- the target (this program with --target) ---- */

/* Written at run time, so its page is the process's own memory (not the executable's) and in the core. */
volatile unsigned procdump_lib_test_marker;
static volatile unsigned long g_spins;

__attribute__((noinline)) static void* target_burn(void* arg) {
  (void)arg;
  for (;;) g_spins++;
  return NULL;
}

/* Ready when it prints "ready"; ends when its stdin closes (the test ended, however it ended). */
__attribute__((noinline)) static int target_main(void) {
  procdump_lib_test_marker = MARKER_VALUE;
  const size_t n = 1 << 20;
  char* heap = malloc(n);
  for (size_t at = 0; at + sizeof kHeapMarker <= n; at += sizeof kHeapMarker)
    memcpy(heap + at, kHeapMarker, sizeof kHeapMarker);
  pthread_t t;
  if (pthread_create(&t, NULL, target_burn, NULL) != 0) return 1;
  if (write(STDOUT_FILENO, "ready\n", 6) != 6) return 1;
  for (char c;;) {
    const ssize_t r = read(STDIN_FILENO, &c, 1);
    if (r == 0 || (r < 0 && errno != EINTR)) break;
  }
  return heap[0] == kHeapMarker[0] ? 0 : 1;
}

static pid_t start_target(void) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) abort();
  const pid_t pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    execl(g_exe, g_exe, "--target", (char*)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  g_target_stdin = in[1];
  char line[8] = "";
  const ssize_t n = read(out[0], line, sizeof line - 1);
  close(out[0]);
  if (n != 6 || strcmp(line, "ready\n") != 0) {
    fprintf(stderr, "the target %s did not start\n", g_exe);
    exit(2);
  }
  return pid;
}

static void end_target(void) {
  close(g_target_stdin);
  kill(g_target, SIGKILL);
  waitpid(g_target, NULL, 0);
}

/* ---- helpers ---- */

static const char* in_dir(const char* name) {
  static char buf[2][512];
  static int which;
  which ^= 1;
  snprintf(buf[which], sizeof buf[which], "%s/%s", g_dir, name);
  return buf[which];
}

/* ProcDump's file name for a dump of the target at `path`. */
static const char* dump_name(const char* path) {
  static char buf[2][512];
  static int which;
  which ^= 1;
  snprintf(buf[which], sizeof buf[which], "%s.%d", path, (int)g_target);
  return buf[which];
}

/* The names in this case's folder, sorted, joined by ' '. */
static const char* dir_listing(void) {
  static char out[1024];
  struct dirent** list;
  const int n = scandir(g_dir, &list, NULL, alphasort);
  out[0] = 0;
  for (int i = 0; i < n; i++) {
    if (strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, "..")) {
      if (out[0]) strncat(out, " ", sizeof out - strlen(out) - 1);
      strncat(out, list[i]->d_name, sizeof out - strlen(out) - 1);
    }
    free(list[i]);
  }
  if (n >= 0) free(list);
  return out;
}

static int file_contains(const char* path, const void* needle, size_t size) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  void* data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (data == MAP_FAILED) return -1;
  const int found = memmem(data, (size_t)st.st_size, needle, size) != NULL;
  munmap(data, (size_t)st.st_size);
  return found;
}

static char* read_small(const char* path) {
  static char buf[4096];
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  const ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  buf[n > 0 ? n : 0] = 0;
  return buf;
}

/* The target runs on after a dump: not stopped, not traced. */
static void check_target_runs(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)g_target);
  const char* status = read_small(path);
  const char* state = strstr(status, "\nState:");
  const char* tracer = strstr(status, "\nTracerPid:");
  CHECK(state && (state[8] == 'R' || state[8] == 'S'), "target state: %.12s", state ? state + 8 : "?");
  CHECK(tracer && atoi(tracer + 11) == 0, "target still traced: %.20s", tracer ? tracer + 11 : "?");
}

/* Runs gdb on the target's executable and `core` (no shell: paths are passed as they are); its output,
   NUL-terminated, and exit status. NULL when gdb is not installed. */
static const char* run_gdb(const char* core, int* status) {
  static char out[1 << 16];
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return NULL;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], STDOUT_FILENO);
    dup2(p[1], STDERR_FILENO);
    execlp("gdb", "gdb", "-nx", "-batch", "-ex", "print/x procdump_lib_test_marker", "-ex",
           "thread apply all bt", g_exe, core, (char*)NULL);
    _exit(127);
  }
  close(p[1]);
  size_t n = 0;
  for (ssize_t r; (r = read(p[0], out + n, sizeof out - 1 - n)) > 0 || (r < 0 && errno == EINTR);)
    if (r > 0) n += (size_t)r;
  close(p[0]);
  out[n] = 0;
  waitpid(pid, status, 0);
  return WIFEXITED(*status) && WEXITSTATUS(*status) == 127 ? NULL : out;
}

/* gdb loads `core` with the target's executable: the marker's value, and the burning thread's stack. */
static void check_in_gdb(const char* core) {
  int status;
  const char* out = run_gdb(core, &status);
  if (!out) {
    const char* noskip = getenv("TRIPDUMP_NO_SKIP");
    CHECK(!(noskip && strcmp(noskip, "1") == 0), "gdb is not installed (TRIPDUMP_NO_SKIP=1)");
    printf("  skipped: loading %s in gdb (gdb is not installed)\n", core);
    return;
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "gdb ended with status %#x:\n%s", status, out);
  CHECK(strstr(out, "= 0xdeadbeef") != NULL, "gdb does not read the marker:\n%s", out);
  CHECK(strstr(out, "target_burn") != NULL, "no target_burn frame in gdb's backtraces:\n%s", out);
  CHECK(strstr(out, "target_main") != NULL, "no target_main frame in gdb's backtraces:\n%s", out);
}

/* A complete core of the target at `core`: ELF core, 0600, its heap in it or not as `heap` says. */
static void check_core(const char* core, int heap) {
  struct stat st;
  CHECK(lstat(core, &st) == 0, "no dump at %s: %s", core, strerror(errno));
  if (g_case_failed) return;
  CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600, "%s: mode %o", core, (unsigned)st.st_mode);
  Elf64_Ehdr eh;
  const int fd = open(core, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0 && read(fd, &eh, sizeof eh) == (ssize_t)sizeof eh, "cannot read %s", core);
  if (fd >= 0) close(fd);
  if (g_case_failed) return;
  CHECK(memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_type == ET_CORE, "%s is not an ELF core", core);
  CHECK(file_contains(core, kHeapMarker, sizeof kHeapMarker) == heap, "%s: the heap is %s", core,
        heap ? "missing" : "there although the mask excludes it");
}

/* A failure as ProcDump's API reports it (-1, a message), with errno `err` and no file at `path`. */
static void check_failure(const char* what, int rc, int err, int errno_after, char* error, const char* names,
                          const char* path) {
  CHECK(rc == -1, "%s: returned %d, expected -1", what, rc);
  CHECK(errno_after == err, "%s: errno %d (%s), expected %d (%s)", what, errno_after, strerror(errno_after),
        err, strerror(err));
  CHECK(error != NULL && strstr(error, names) != NULL, "%s: message '%s' does not name '%s'", what,
        error ? error : "(null)", names);
  struct stat st;
  if (path) CHECK(lstat(path, &st) < 0 && errno == ENOENT, "%s: %s was created", what, path);
  pdFreeError(error);
}

/* ---- the cases ---- */

static void case_basic_dump(void) {
  char* error = (char*)1; /* must be set to NULL on success */
  const int rc = pdWriteDump(g_target, in_dir("core"), PD_DUMP_MASK_DEFAULT, false, &error);
  CHECK(rc == 0, "returned %d: %s", rc, rc && error ? error : "");
  CHECK(error == NULL, "error not set to NULL on success");
  pdFreeError(error);
  char expected[64];
  snprintf(expected, sizeof expected, "core.%d", (int)g_target);
  CHECK(strcmp(dir_listing(), expected) == 0, "the folder holds '%s', expected '%s' alone", dir_listing(),
        expected);
  check_core(dump_name(in_dir("core")), 1);
  if (!g_case_failed) check_in_gdb(dump_name(in_dir("core")));
  check_target_runs();
}

static void case_name_convention(void) {
  /* A relative path is relative to the caller's folder. */
  char cwd[PATH_MAX];
  CHECK(getcwd(cwd, sizeof cwd) && chdir(g_dir) == 0, "chdir %s", g_dir);
  int rc = pdWriteDump(g_target, "relative", PD_DUMP_MASK_DEFAULT, false, NULL);
  CHECK(rc == 0 && chdir(cwd) == 0, "relative path: returned %d", rc);
  check_core(dump_name(in_dir("relative")), 1);
  /* The suffix follows whatever the name ends with. */
  rc = pdWriteDump(g_target, in_dir("app.core"), PD_DUMP_MASK_DEFAULT, false, NULL);
  CHECK(rc == 0, "app.core: returned %d", rc);
  check_core(dump_name(in_dir("app.core")), 1);
  /* ProcDump splits the path into folder and name: "sub/" names the file sub.<pid>, not one inside sub. */
  rc = pdWriteDump(g_target, in_dir("sub//"), PD_DUMP_MASK_DEFAULT, false, NULL);
  CHECK(rc == 0, "sub//: returned %d", rc);
  check_core(dump_name(in_dir("sub")), 1);
  char expected[256];
  snprintf(expected, sizeof expected, "app.core.%d relative.%d sub.%d", (int)g_target, (int)g_target,
           (int)g_target);
  CHECK(strcmp(dir_listing(), expected) == 0, "the folder holds '%s', expected '%s'", dir_listing(),
        expected);
}

static void case_overwrite(void) {
  const char* path = dump_name(in_dir("core"));
  FILE* f = fopen(path, "w");
  fputs("stale\n", f);
  fclose(f);
  char* error = NULL;
  errno = 0;
  int rc = pdWriteDump(g_target, in_dir("core"), PD_DUMP_MASK_DEFAULT, false, &error);
  const int err = errno;
  CHECK(rc == -1 && err == EEXIST, "bOverwrite false: returned %d, errno %d", rc, err);
  CHECK(error && strstr(error, path), "message '%s' does not name %s", error ? error : "(null)", path);
  pdFreeError(error);
  CHECK(strcmp(read_small(path), "stale\n") == 0, "the existing file was changed");
  error = NULL;
  rc = pdWriteDump(g_target, in_dir("core"), PD_DUMP_MASK_DEFAULT, true, &error);
  CHECK(rc == 0, "bOverwrite true: returned %d: %s", rc, error ? error : "");
  pdFreeError(error);
  check_core(path, 1);
  CHECK(strchr(dir_listing(), ' ') == NULL, "the folder holds '%s', expected the dump alone", dir_listing());
}

static void case_invalid_arguments(void) {
  char core[512];
  snprintf(core, sizeof core, "%s", in_dir("core"));
  const struct {
    const char* what;
    pid_t pid;
    const char* path;
    int mask;
    const char* names;
  } bad[] = {
      {"pid 0", 0, core, PD_DUMP_MASK_DEFAULT, "got 0"},
      {"pid -1", -1, core, PD_DUMP_MASK_DEFAULT, "got -1"},
      {"NULL path", g_target, NULL, PD_DUMP_MASK_DEFAULT, "dumpPath"},
      {"empty path", g_target, "", PD_DUMP_MASK_DEFAULT, "dumpPath"},
      {"mask -2", g_target, core, -2, "mask"},
      {"mask INT_MIN", g_target, core, INT_MIN, "mask"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char* error = NULL;
    errno = 0;
    const int rc = pdWriteDump(bad[i].pid, bad[i].path, bad[i].mask, true, &error);
    check_failure(bad[i].what, rc, EINVAL, errno, error, bad[i].names, NULL);
    /* The error pointer is optional. */
    errno = 0;
    CHECK(pdWriteDump(bad[i].pid, bad[i].path, bad[i].mask, true, NULL) == -1 && errno == EINVAL,
          "%s without an error pointer", bad[i].what);
  }
  CHECK(strcmp(dir_listing(), "") == 0, "the folder holds '%s'", dir_listing());
}

static void case_nonexistent_pid(void) {
  /* A pid that was real a moment ago: a child that exited and was reaped. */
  const pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, NULL, 0);
  char* error = NULL;
  errno = 0;
  const int rc = pdWriteDump(gone, in_dir("core"), PD_DUMP_MASK_DEFAULT, true, &error);
  char names[32];
  snprintf(names, sizeof names, "pid %d", (int)gone);
  check_failure("gone pid", rc, ESRCH, errno, error, names, NULL);
  CHECK(strcmp(dir_listing(), "") == 0, "the folder holds '%s'", dir_listing());
}

static void case_bad_directory(void) {
  char* error = NULL;
  errno = 0;
  const int rc = pdWriteDump(g_target, in_dir("no_such_dir/core"), PD_DUMP_MASK_DEFAULT, true, &error);
  check_failure("missing folder", rc, ENOENT, errno, error, "no_such_dir", NULL);
  CHECK(strcmp(dir_listing(), "") == 0, "the folder holds '%s'", dir_listing());
}

static void case_custom_mask(void) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/%d/coredump_filter", (int)g_target);
  char before[32];
  snprintf(before, sizeof before, "%s", read_small(proc));
  /* ProcDump's lib_api_custom_mask: 0x7f, every standard mapping type. */
  int rc = pdWriteDump(g_target, in_dir("all"), 0x7f, false, NULL);
  CHECK(rc == 0, "mask 0x7f: returned %d", rc);
  check_core(dump_name(in_dir("all")), 1);
  /* Bit 0 (anonymous private memory) clear: the heap is left out. */
  rc = pdWriteDump(g_target, in_dir("noanon"), 0x32, false, NULL);
  CHECK(rc == 0, "mask 0x32: returned %d", rc);
  check_core(dump_name(in_dir("noanon")), 0);
  /* Bits above 8 mean nothing to coredump_filter, where ProcDump writes the mask: ignored. */
  rc = pdWriteDump(g_target, in_dir("highbits"), 0x7ffffe32, false, NULL);
  CHECK(rc == 0, "mask 0x7ffffe32: returned %d", rc);
  check_core(dump_name(in_dir("highbits")), 0);
  CHECK(strcmp(before, read_small(proc)) == 0, "the target's coredump_filter changed: %s -> %s", before,
        read_small(proc));
}

struct Call {
  const char* path;
  int rc;
};

static void* call_body(void* arg) {
  struct Call* call = arg;
  call->rc = pdWriteDump(g_target, call->path, PD_DUMP_MASK_DEFAULT, false, NULL);
  return NULL;
}

static void case_small_stack(void) {
  /* ProcDump's scenario calls from a thread with a 2 MiB stack; PTHREAD_STACK_MIN (16 KiB) is far less. */
  const size_t sizes[] = {2u << 20, PTHREAD_STACK_MIN};
  const char* names[] = {"stack2m", "stackmin"};
  for (size_t i = 0; i < 2; i++) {
    struct Call call = {in_dir(names[i]), -1};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, sizes[i]);
    pthread_t t;
    CHECK(pthread_create(&t, &attr, call_body, &call) == 0, "pthread_create");
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
    CHECK(call.rc == 0, "%zu-byte stack: returned %d", sizes[i], call.rc);
    check_core(dump_name(call.path), 1);
  }
}

static void case_from_cxx(void) {
  int err = 0;
  int rc = cxx_write_dump(g_target, in_dir("cxx"), PD_DUMP_MASK_DEFAULT, 0, &err);
  CHECK(rc == 0, "from C++: returned %d (errno %d)", rc, err);
  check_core(dump_name(in_dir("cxx")), 1);
  rc = cxx_write_dump(0, in_dir("cxx"), PD_DUMP_MASK_DEFAULT, 1, &err);
  CHECK(rc == -1 && err == EINVAL, "from C++, pid 0: returned %d, errno %d", rc, err);
}

static void remove_tree(const char* dir) {
  DIR* d = opendir(dir);
  for (struct dirent* e; d && (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (e->d_type == DT_DIR)
      remove_tree(path);
    else
      unlink(path);
  }
  if (d) closedir(d);
  if (rmdir(dir) < 0) fprintf(stderr, "could not remove %s: %s\n", dir, strerror(errno));
}

struct Case {
  const char* name;
  void (*run)(void);
};

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--target") == 0) return target_main();
  const struct Case cases[] = {
      {"pd_basic_dump", case_basic_dump},
      {"pd_name_convention", case_name_convention},
      {"pd_overwrite", case_overwrite},
      {"pd_invalid_arguments", case_invalid_arguments},
      {"pd_nonexistent_pid", case_nonexistent_pid},
      {"pd_bad_directory", case_bad_directory},
      {"pd_custom_mask", case_custom_mask},
      {"pd_small_stack", case_small_stack},
      {"pd_from_cxx", case_from_cxx},
  };
  const ssize_t n = readlink("/proc/self/exe", g_exe, sizeof g_exe - 1);
  if (n <= 0) {
    perror("readlink /proc/self/exe");
    return 2;
  }
  g_exe[n] = 0;
  snprintf(g_root, sizeof g_root, "/tmp/procdump-lib-test-XXXXXX");
  if (!mkdtemp(g_root)) {
    perror("mkdtemp");
    return 2;
  }
  g_target = start_target();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
    g_case_failed = 0;
    snprintf(g_dir, sizeof g_dir, "%s/%s", g_root, cases[i].name);
    if (mkdir(g_dir, 0700) < 0) abort();
    cases[i].run();
    printf("%s %s\n", g_case_failed ? "FAIL" : "ok  ", cases[i].name);
    fflush(stdout);
    if (g_case_failed)
      g_failed++;
    else
      g_passed++;
  }
  end_target();
  remove_tree(g_root);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
