/*
 * libtripdump from C, the way a program links it: ProcDump 3.x's lib_api_* scenarios (a good dump, a
 * folder that does not exist, an empty or NULL path, pid 0, a negative pid, a pid that is gone, a custom
 * filter, overwrite on and off, a caller thread with a small stack) plus what a library inside someone
 * else's process must survive: the target is this program's own child, and one case has a thread that
 * reaps every child with waitpid(-1) while the dump runs. Each core is checked from its bytes: an ELF core
 * of this machine, one NT_PRSTATUS per thread, mode 0600, and the target's heap marker present (or absent
 * when the filter excludes anonymous memory).
 *
 * Usage: lib_test [FILTER]   (runs the cases whose name contains FILTER). Ends with "N passed, N failed".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tripdump.h"

static const char kMarker[] = "libtripdump-test-heap-marker";
static char g_dir[64];
static pid_t g_target = -1;
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

/* The target: a child of this program with a heap block full of the marker and two threads, then idle. */
static void* idle_thread(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

static pid_t start_target(void) {
  int ready[2];
  if (pipe(ready) < 0) abort();
  const pid_t pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    close(ready[0]);
    const size_t n = 1 << 20;
    char* heap = malloc(n);
    for (size_t at = 0; at + sizeof kMarker <= n; at += sizeof kMarker)
      memcpy(heap + at, kMarker, sizeof kMarker);
    pthread_t t;
    pthread_create(&t, NULL, idle_thread, NULL);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  char c;
  if (read(ready[0], &c, 1) != 1) abort();
  close(ready[0]);
  return pid;
}

static char* path_in_dir(const char* name) {
  static char buf[256];
  snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
  return buf;
}

/* The whole file, NUL-terminated (read to the end: /proc files have no size). */
static char* read_file(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16;
  char* data = malloc(cap + 1);
  *size = 0;
  for (size_t n; (n = fread(data + *size, 1, cap - *size, f)) > 0;) {
    *size += n;
    if (*size == cap) data = realloc(data, (cap *= 2) + 1);
  }
  data[*size] = 0;
  fclose(f);
  return data;
}

static int count_threads(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  size_t n;
  char* s = read_file(path, &n);
  const char* t = s ? strstr(s, "\nThreads:") : NULL;
  const int threads = t ? atoi(t + 9) : -1;
  free(s);
  return threads;
}

/* Checks `path` is a complete core of the target; `marker` says whether its heap must be in it. */
static void check_core(const char* path, int marker) {
  struct stat st;
  CHECK(lstat(path, &st) == 0, "no core at %s: %s", path, strerror(errno));
  if (g_case_failed) return;
  CHECK(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600, "mode %o", (unsigned)st.st_mode);
  size_t size;
  char* data = read_file(path, &size);
  CHECK(data && size > sizeof(Elf64_Ehdr), "cannot read %s", path);
  if (g_case_failed) {
    free(data);
    return;
  }
  const Elf64_Ehdr* eh = (const Elf64_Ehdr*)data;
  CHECK(memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_type == ET_CORE, "not an ELF core");
#if defined(__x86_64__)
  CHECK(eh->e_machine == EM_X86_64, "e_machine %u", eh->e_machine);
#endif
  CHECK(eh->e_phnum > 1 && eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr) <= size,
        "bad program headers");
  if (!g_case_failed) {
    const Elf64_Phdr* ph = (const Elf64_Phdr*)(data + eh->e_phoff);
    CHECK(ph[0].p_type == PT_NOTE && ph[0].p_offset + ph[0].p_filesz <= size, "first segment is not PT_NOTE");
    int prstatus = 0;
    for (size_t at = ph[0].p_offset;
         !g_case_failed && at + sizeof(Elf64_Nhdr) <= ph[0].p_offset + ph[0].p_filesz;) {
      const Elf64_Nhdr* nh = (const Elf64_Nhdr*)(data + at);
      if (nh->n_type == NT_PRSTATUS) prstatus++;
      at += sizeof *nh + ((nh->n_namesz + 3) & ~3u) + ((nh->n_descsz + 3) & ~3u);
    }
    CHECK(prstatus == count_threads(g_target), "%d NT_PRSTATUS notes for %d threads", prstatus,
          count_threads(g_target));
  }
  const int found = memmem(data, size, kMarker, sizeof kMarker) != NULL;
  CHECK(found == marker, "heap marker %s", marker ? "missing" : "present although the filter excludes it");
  free(data);
}

static int write_core(pid_t pid, const char* path, int filter, unsigned flags, char** error) {
  return tripdump_write_core(pid, path, filter, flags, error);
}

static void expect_failure(int rc, int err, char* error, const char* names, const char* path) {
  CHECK(rc == err, "returned %d (%s), expected %d (%s)", rc, strerror(rc), err, strerror(err));
  CHECK(error != NULL && strstr(error, names) != NULL, "message '%s' does not name '%s'",
        error ? error : "(null)", names);
  struct stat st;
  if (path) CHECK(lstat(path, &st) < 0 && errno == ENOENT, "%s was created", path);
  tripdump_free_error(error);
}

static void case_basic(void) {
  char* error = (char*)1;
  const char* path = path_in_dir("basic.core");
  const int rc = write_core(g_target, path, TRIPDUMP_FILTER_DEFAULT, 0, &error);
  CHECK(rc == 0, "returned %d: %s", rc, error ? error : "");
  CHECK(error == NULL, "error not set to NULL on success");
  check_core(path, 1);
  tripdump_free_error(error); /* NULL: a no-op */
}

static void case_no_error_pointer(void) {
  const char* path = path_in_dir("noerr.core");
  CHECK(write_core(g_target, path, TRIPDUMP_FILTER_DEFAULT, TRIPDUMP_STOP_MODE, NULL) == 0, "dump failed");
  check_core(path, 1);
  CHECK(write_core(0, path, TRIPDUMP_FILTER_DEFAULT, 0, NULL) == EINVAL, "pid 0 without an error pointer");
}

static void case_bad_directory(void) {
  char* error = NULL;
  char path[256];
  snprintf(path, sizeof path, "%s/no_such_dir/core", g_dir);
  const int rc = write_core(g_target, path, TRIPDUMP_FILTER_DEFAULT, 0, &error);
  expect_failure(rc, ENOENT, error, "no_such_dir", path);
}

static void case_empty_and_null_path(void) {
  char* error = NULL;
  int rc = write_core(g_target, "", TRIPDUMP_FILTER_DEFAULT, 0, &error);
  expect_failure(rc, EINVAL, error, "path", NULL);
  error = NULL;
  rc = write_core(g_target, NULL, TRIPDUMP_FILTER_DEFAULT, 0, &error);
  expect_failure(rc, EINVAL, error, "path", NULL);
}

static void case_bad_pids(void) {
  const char* path = path_in_dir("badpid.core");
  const pid_t pids[] = {0, -1, -12345};
  for (size_t i = 0; i < sizeof pids / sizeof pids[0]; i++) {
    char* error = NULL;
    char names[32];
    snprintf(names, sizeof names, "got %d", (int)pids[i]);
    const int rc = write_core(pids[i], path, TRIPDUMP_FILTER_DEFAULT, 0, &error);
    expect_failure(rc, EINVAL, error, names, path);
  }
  /* A pid that was real a moment ago: a child that exited and was reaped. */
  const pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, NULL, 0);
  char* error = NULL;
  char names[32];
  snprintf(names, sizeof names, "pid %d", (int)gone);
  const int rc = write_core(gone, path, TRIPDUMP_FILTER_DEFAULT, 0, &error);
  expect_failure(rc, ESRCH, error, names, path);
}

static void case_custom_filter(void) {
  char before[32] = "", after[32] = "";
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/%d/coredump_filter", (int)g_target);
  size_t n;
  char* s = read_file(proc, &n);
  snprintf(before, sizeof before, "%s", s ? s : "");
  free(s);
  /* Bit 0 (anonymous private memory) clear: the heap is not written. */
  char* error = NULL;
  const char* path = path_in_dir("filter.core");
  int rc = write_core(g_target, path, 0x32, 0, &error);
  CHECK(rc == 0, "returned %d: %s", rc, error ? error : "");
  tripdump_free_error(error);
  check_core(path, 0);
  s = read_file(proc, &n);
  snprintf(after, sizeof after, "%s", s ? s : "");
  free(s);
  CHECK(strcmp(before, after) == 0, "the target's coredump_filter changed: %s -> %s", before, after);
  const int bad[] = {-2, TRIPDUMP_FILTER_MAX + 1, 0x7fffffff};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    error = NULL;
    rc = write_core(g_target, path_in_dir("badfilter.core"), bad[i], 0, &error);
    expect_failure(rc, EINVAL, error, "filter", path_in_dir("badfilter.core"));
  }
  error = NULL;
  rc = write_core(g_target, path_in_dir("badflags.core"), TRIPDUMP_FILTER_DEFAULT, 0x80, &error);
  expect_failure(rc, EINVAL, error, "flags", path_in_dir("badflags.core"));
}

static void write_stale(const char* path) {
  FILE* f = fopen(path, "w");
  fputs("stale\n", f);
  fclose(f);
}

static void case_overwrite(void) {
  const char* path = path_in_dir("existing.core");
  write_stale(path);
  char* error = NULL;
  int rc = write_core(g_target, path, TRIPDUMP_FILTER_DEFAULT, 0, &error);
  CHECK(rc == EEXIST, "without TRIPDUMP_OVERWRITE: returned %d", rc);
  CHECK(error && strstr(error, "existing.core"), "message '%s' does not name the file", error ? error : "");
  tripdump_free_error(error);
  size_t n;
  char* data = read_file(path, &n);
  CHECK(data && strcmp(data, "stale\n") == 0, "the existing file was changed");
  free(data);
  error = NULL;
  rc = write_core(g_target, path, TRIPDUMP_FILTER_DEFAULT, TRIPDUMP_OVERWRITE, &error);
  CHECK(rc == 0, "with TRIPDUMP_OVERWRITE: returned %d: %s", rc, error ? error : "");
  tripdump_free_error(error);
  check_core(path, 1);
}

struct SmallStackCall {
  const char* path;
  int rc;
};

static void* small_stack_body(void* arg) {
  struct SmallStackCall* call = arg;
  call->rc = write_core(g_target, call->path, TRIPDUMP_FILTER_DEFAULT, 0, NULL);
  return NULL;
}

static void case_small_stack(void) {
  /* ProcDump's scenario uses 2 MiB; PTHREAD_STACK_MIN (16 KiB) is far less than the writer needs. */
  struct SmallStackCall call = {path_in_dir("smallstack.core"), -1};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN);
  pthread_t t;
  CHECK(pthread_create(&t, &attr, small_stack_body, &call) == 0, "pthread_create");
  pthread_join(t, NULL);
  pthread_attr_destroy(&attr);
  CHECK(call.rc == 0, "returned %d", call.rc);
  check_core(call.path, 1);
}

/* A thread that reaps every child (as a program's SIGCHLD loop would), noting any stop it is shown. */
struct Reaper {
  volatile int stops_seen, reaped;
};

static void* reaper_body(void* arg) {
  struct Reaper* r = arg;
  for (;;) {
    int status;
    const pid_t pid = waitpid(-1, &status, __WALL | WUNTRACED);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) return NULL; /* ECHILD: no children left */
    if (WIFSTOPPED(status))
      r->stops_seen++;
    else
      r->reaped++;
    if (pid == g_target) return NULL;
  }
}

static void case_caller_reaps_children(void) {
  struct Reaper r = {0, 0};
  pthread_t t;
  pthread_create(&t, NULL, reaper_body, &r);
  const char* path = path_in_dir("reaper.core");
  char* error = NULL;
  const int rc = write_core(g_target, path, TRIPDUMP_FILTER_DEFAULT, TRIPDUMP_STOP_MODE, &error);
  CHECK(rc == 0, "returned %d: %s", rc, error ? error : "");
  tripdump_free_error(error);
  check_core(path, 1);
  /* The target's ptrace stops went to the dumper, never to this process. */
  CHECK(r.stops_seen == 0, "the caller's waitpid(-1) saw %d ptrace stops", r.stops_seen);
  CHECK(kill(g_target, 0) == 0, "the target is gone");
  /* End the reaper: it takes the target's exit, then the target is restarted for the next cases. */
  kill(g_target, SIGKILL);
  pthread_join(t, NULL);
  g_target = start_target();
}

static void remove_dir(const char* dir) {
  DIR* d = opendir(dir);
  for (struct dirent* e; d && (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
  if (d) closedir(d);
  if (rmdir(dir) < 0) fprintf(stderr, "could not remove %s: %s\n", dir, strerror(errno));
}

struct Case {
  const char* name;
  void (*run)(void);
};

int main(int argc, char** argv) {
  const struct Case cases[] = {
      {"basic_dump", case_basic},
      {"no_error_pointer", case_no_error_pointer},
      {"bad_directory", case_bad_directory},
      {"empty_and_null_path", case_empty_and_null_path},
      {"bad_pids", case_bad_pids},
      {"custom_filter", case_custom_filter},
      {"overwrite", case_overwrite},
      {"small_stack", case_small_stack},
      {"caller_reaps_children", case_caller_reaps_children},
  };
  snprintf(g_dir, sizeof g_dir, "/tmp/libtripdump-test-XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 2;
  }
  g_target = start_target();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
    g_case_failed = 0;
    cases[i].run();
    printf("%s %s\n", g_case_failed ? "FAIL" : "ok  ", cases[i].name);
    fflush(stdout);
    if (g_case_failed)
      g_failed++;
    else
      g_passed++;
  }
  kill(g_target, SIGKILL);
  waitpid(g_target, NULL, 0);
  remove_dir(g_dir);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
