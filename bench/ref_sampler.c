// The C reference loop the tripdump sampler is measured against: the cheapest way we know to read the same
// fields, so the ratio says how much the JS API, the N-API glue and the column layout cost on top of the
// kernel's own work.
//
// usage: ref_sampler [-f stat|stat,statm,io|stat,statm,io,fd] [-w warmup] [-t threads]
//        stdin: pids (whitespace-separated), a line ".", then one line per round wanted.
//
// Each line after the "." runs one round and writes its µs/process on a line of its own, so the bench can
// pair every C round with a tripdump round taken right next to it. At end of input a JSON summary follows
// (failed reads, the first record). Every file is opened once; each round is one pread(fd, buf, 4096, 0)
// per file and a hand-written integer parse. With -t N the pids are cut into N equal slices, one per thread
// (the main thread takes the first), and a round ends when the slowest slice does. The fd count is
// fstat(/proc/PID/fd).st_size (kernel >= 6.2), with a getdents64 count as fallback.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { SRC_STAT = 1, SRC_STATM = 2, SRC_IO = 4, SRC_FD = 8 };
enum { BUF_CAP = 4096 };

typedef struct {
  int pid;
  char comm[64];
  char state;
  int ppid, pgrp;
  uint64_t minflt, majflt, utime, stime, num_threads, starttime, vsize, rss;
  uint64_t statm[7];
  uint64_t io[7];
  uint64_t fds;
} record_t;

typedef struct {
  int stat_fd, statm_fd, io_fd, dir_fd;
} proc_fds_t;

static int fd_count_from_size = 0;

// Parses an unsigned decimal at *p, leaving *p after it. Values in /proc are well-formed, so no overflow or
// sign handling is needed except for the fields skip_field() passes over.
static uint64_t parse_u64(const char** p, const char* end) {
  const char* s = *p;
  uint64_t v = 0;
  while (s < end && (unsigned)(*s - '0') < 10) v = v * 10 + (uint64_t)(*s++ - '0');
  *p = s;
  return v;
}

static void skip_spaces(const char** p, const char* end) {
  while (*p < end && **p == ' ') (*p)++;
}

// Skips one space-separated field without converting it (it may be negative, e.g. nice).
static void skip_field(const char** p, const char* end) {
  skip_spaces(p, end);
  while (*p < end && **p != ' ') (*p)++;
}

static uint64_t next_u64(const char** p, const char* end) {
  skip_spaces(p, end);
  return parse_u64(p, end);
}

// stat: "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
// cutime cstime priority nice num_threads itrealvalue starttime vsize rss ...". comm may contain spaces and
// ')' so the last ')' ends it.
static int parse_stat(const char* buf, size_t len, record_t* r) {
  const char* end = buf + len;
  const char* p = buf;
  r->pid = (int)parse_u64(&p, end);
  const char* open = memchr(buf, '(', len);
  const char* close = memrchr(buf, ')', len);
  if (open == NULL || close == NULL || close < open) return -1;
  size_t comm_len = (size_t)(close - open - 1);
  if (comm_len >= sizeof r->comm) comm_len = sizeof r->comm - 1;
  memcpy(r->comm, open + 1, comm_len);
  r->comm[comm_len] = '\0';
  p = close + 1;
  skip_spaces(&p, end);
  if (p >= end) return -1;
  r->state = *p++;
  r->ppid = (int)next_u64(&p, end);
  r->pgrp = (int)next_u64(&p, end);
  for (int i = 0; i < 4; i++) skip_field(&p, end);  // session tty_nr tpgid flags
  r->minflt = next_u64(&p, end);
  skip_field(&p, end);  // cminflt
  r->majflt = next_u64(&p, end);
  skip_field(&p, end);  // cmajflt
  r->utime = next_u64(&p, end);
  r->stime = next_u64(&p, end);
  for (int i = 0; i < 4; i++) skip_field(&p, end);  // cutime cstime priority nice
  r->num_threads = next_u64(&p, end);
  skip_field(&p, end);  // itrealvalue
  r->starttime = next_u64(&p, end);
  r->vsize = next_u64(&p, end);
  r->rss = next_u64(&p, end);
  return p < end ? 0 : -1;
}

static int parse_statm(const char* buf, size_t len, record_t* r) {
  const char* p = buf;
  const char* end = buf + len;
  for (int i = 0; i < 7; i++) r->statm[i] = next_u64(&p, end);
  return 0;
}

// io: seven "name: value" lines in a fixed order (rchar wchar syscr syscw read_bytes write_bytes
// cancelled_write_bytes).
static int parse_io(const char* buf, size_t len, record_t* r) {
  const char* p = buf;
  const char* end = buf + len;
  for (int i = 0; i < 7; i++) {
    const char* colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL) return -1;
    p = colon + 1;
    r->io[i] = next_u64(&p, end);
  }
  return 0;
}

static ssize_t read_file(int fd, char* buf) {
  ssize_t got;
  do {
    got = pread(fd, buf, BUF_CAP, 0);
  } while (got < 0 && errno == EINTR);
  return got;
}

static int count_fds_getdents(int dir_fd) {
  char buf[8192];
  int count = 0;
  if (lseek(dir_fd, 0, SEEK_SET) < 0) return -1;
  for (;;) {
    long got = syscall(SYS_getdents64, dir_fd, buf, sizeof buf);
    if (got < 0) return -1;
    if (got == 0) break;
    for (long off = 0; off < got;) {
      struct dirent64* d = (struct dirent64*)(buf + off);
      if (d->d_name[0] != '.') count++;
      off += d->d_reclen;
    }
  }
  return count;
}

static int read_fd_count(int dir_fd, uint64_t* out) {
  if (fd_count_from_size) {
    struct stat st;
    if (fstat(dir_fd, &st) != 0) return -1;
    *out = (uint64_t)st.st_size;
    return 0;
  }
  int n = count_fds_getdents(dir_fd);
  if (n < 0) return -1;
  *out = (uint64_t)n;
  return 0;
}

// One round over every process. Returns the number of processes that failed (exited or unreadable).
static long sample_round(const proc_fds_t* fds, long n, int sources, record_t* rec, uint64_t* checksum) {
  char buf[BUF_CAP];
  long failed = 0;
  for (long i = 0; i < n; i++) {
    record_t* r = &rec[i];
    int bad = 0;
    ssize_t got;
    if (sources & SRC_STAT) {
      got = read_file(fds[i].stat_fd, buf);
      bad |= got <= 0 || parse_stat(buf, (size_t)got, r) != 0;
    }
    if (sources & SRC_STATM) {
      got = read_file(fds[i].statm_fd, buf);
      bad |= got <= 0 || parse_statm(buf, (size_t)got, r) != 0;
    }
    if (sources & SRC_IO) {
      got = read_file(fds[i].io_fd, buf);
      bad |= got <= 0 || parse_io(buf, (size_t)got, r) != 0;
    }
    if (sources & SRC_FD) bad |= read_fd_count(fds[i].dir_fd, &r->fds) != 0;
    failed += bad;
    // Folding the results into a printed value keeps the compiler from dropping the parse.
    *checksum += r->rss + r->utime + r->statm[1] + r->io[0] + r->fds + (uint64_t)r->state;
  }
  return failed;
}

// A thread's share of the pids. Threads meet at a barrier before and after every round.
typedef struct {
  const proc_fds_t* fds;
  record_t* rec;
  long n;
  int sources;
  pthread_barrier_t* barrier;
  const int* stop;  // set by the main thread before the start barrier of the round that does not happen
  long failed;
  uint64_t checksum;
} slice_t;

// One round: returns 0 when the main thread has ended the rounds instead.
static int run_slice_round(slice_t* s) {
  pthread_barrier_wait(s->barrier);
  if (*s->stop) return 0;
  s->failed += sample_round(s->fds, s->n, s->sources, s->rec, &s->checksum);
  pthread_barrier_wait(s->barrier);
  return 1;
}

static void* slice_main(void* arg) {
  while (run_slice_round(arg)) {
  }
  return NULL;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int open_proc(int pid, const char* name, int flags) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  return open(path, flags | O_CLOEXEC);
}

static int parse_sources(const char* spec) {
  int sources = 0;
  char copy[64];
  snprintf(copy, sizeof copy, "%s", spec);
  for (char* save = NULL;;) {
    char* tok = strtok_r(save == NULL ? copy : NULL, ",", &save);
    if (tok == NULL) break;
    if (strcmp(tok, "stat") == 0)
      sources |= SRC_STAT;
    else if (strcmp(tok, "statm") == 0)
      sources |= SRC_STATM;
    else if (strcmp(tok, "io") == 0)
      sources |= SRC_IO;
    else if (strcmp(tok, "fd") == 0)
      sources |= SRC_FD;
    else
      return -1;
  }
  return sources;
}

// Reads pids from stdin up to the "." line (consumed with the rest of its line).
static int read_pids(int** out) {
  size_t cap = 4096, n = 0;
  int* pids = malloc(cap * sizeof *pids);
  if (pids == NULL) return -1;
  int pid;
  while (scanf("%d", &pid) == 1) {
    if (n == cap) {
      cap *= 2;
      int* grown = realloc(pids, cap * sizeof *pids);
      if (grown == NULL) return -1;
      pids = grown;
    }
    pids[n++] = pid;
  }
  char line[64];
  if (fgets(line, sizeof line, stdin) == NULL || line[0] != '.') return -1;
  *out = pids;
  return (int)n;
}

int main(int argc, char** argv) {
  const char* spec = "stat";
  int warmup = 3, threads = 1, opt;
  while ((opt = getopt(argc, argv, "f:w:t:")) != -1) {
    if (opt == 'f')
      spec = optarg;
    else if (opt == 'w')
      warmup = atoi(optarg);
    else if (opt == 't')
      threads = atoi(optarg);
    else {
      fprintf(stderr, "usage: %s [-f stat,statm,io,fd] [-w warmup] [-t threads] < pids, \".\", rounds\n",
              argv[0]);
      return 2;
    }
  }
  int sources = parse_sources(spec);
  if (sources <= 0 || optind < argc || warmup < 0 || threads < 1 || threads > 64) {
    fprintf(stderr, "ref_sampler: bad options\n");
    return 2;
  }
  int* pids = NULL;
  int n = read_pids(&pids);
  if (n <= 0) {
    fprintf(stderr, "ref_sampler: no pids\n");
    return 2;
  }

  // Up to four kept fds per process: lift the soft limit to the hard one before opening them.
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  // Probe once whether this kernel reports the fd count in st_size: our own fd dir is never empty.
  if (sources & SRC_FD) {
    int self = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    fd_count_from_size = self >= 0 && fstat(self, &st) == 0 && st.st_size > 0;
    if (self >= 0) close(self);
  }

  proc_fds_t* fds = calloc((size_t)n, sizeof *fds);
  record_t* rec = calloc((size_t)n, sizeof *rec);
  if (fds == NULL || rec == NULL) {
    fprintf(stderr, "ref_sampler: out of memory\n");
    return 1;
  }
  for (int i = 0; i < n; i++) {
    fds[i].stat_fd = fds[i].statm_fd = fds[i].io_fd = fds[i].dir_fd = -1;
    int ok = 1;
    if (sources & SRC_STAT) ok &= (fds[i].stat_fd = open_proc(pids[i], "stat", O_RDONLY)) >= 0;
    if (sources & SRC_STATM) ok &= (fds[i].statm_fd = open_proc(pids[i], "statm", O_RDONLY)) >= 0;
    if (sources & SRC_IO) ok &= (fds[i].io_fd = open_proc(pids[i], "io", O_RDONLY)) >= 0;
    if (sources & SRC_FD) ok &= (fds[i].dir_fd = open_proc(pids[i], "fd", O_RDONLY | O_DIRECTORY)) >= 0;
    if (!ok) {
      fprintf(stderr, "ref_sampler: cannot open /proc/%d files: %s\n", pids[i], strerror(errno));
      return 1;
    }
  }

  if (threads > n) threads = n;
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, (unsigned)threads);
  int stop = 0;
  slice_t slices[64];
  pthread_t tids[64];
  for (int t = 0; t < threads; t++) {
    const long from = (long)n * t / threads, to = (long)n * (t + 1) / threads;
    slices[t] = (slice_t){fds + from, rec + from, to - from, sources, &barrier, &stop, 0, 0};
    if (t > 0 && pthread_create(&tids[t], NULL, slice_main, &slices[t]) != 0) {
      fprintf(stderr, "ref_sampler: cannot start thread %d\n", t);
      return 1;
    }
  }
  for (int i = 0; i < warmup; i++) run_slice_round(&slices[0]);
  char line[64];
  int rounds = 0;
  while (fgets(line, sizeof line, stdin) != NULL) {
    double t0 = now_us();
    run_slice_round(&slices[0]);
    printf("%.3f\n", (now_us() - t0) / n);
    fflush(stdout);
    rounds++;
  }
  stop = 1;
  pthread_barrier_wait(&barrier);
  uint64_t checksum = 0;
  long failed = 0;
  for (int t = 0; t < threads; t++) {
    if (t > 0) pthread_join(tids[t], NULL);
    checksum += slices[t].checksum;
    failed += slices[t].failed;
  }
  // The first record shows the parse worked. comm is kernel-controlled text from another process, so
  // anything that would break the JSON line is replaced.
  record_t* r = &rec[0];
  for (char* c = r->comm; *c; c++)
    if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '_';
  printf(
      "{\"fields\":\"%s\",\"processes\":%d,\"rounds\":%d,\"failed\":%ld,\"fd_count_from_size\":%s,"
      "\"checksum\":%llu,"
      "\"first\":{\"pid\":%d,\"comm\":\"%s\",\"state\":\"%c\",\"ppid\":%d,\"threads\":%llu,\"rss\":%llu,"
      "\"statm_resident\":%llu,\"rchar\":%llu,\"fds\":%llu}}\n",
      spec, n, rounds, failed, fd_count_from_size ? "true" : "false", (unsigned long long)checksum, r->pid,
      r->comm, r->state ? r->state : '?', r->ppid, (unsigned long long)r->num_threads,
      (unsigned long long)r->rss, (unsigned long long)r->statm[1], (unsigned long long)r->io[0],
      (unsigned long long)r->fds);
  return failed ? 3 : 0;
}
